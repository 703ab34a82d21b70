"""The package's structure: no import cycle, nothing below the service imports it, small modules."""
