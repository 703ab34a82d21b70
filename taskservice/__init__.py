"""taskservice."""
