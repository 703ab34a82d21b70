"""Framework recipes for taskservice (each is exercised by tests/ecosystem)."""
