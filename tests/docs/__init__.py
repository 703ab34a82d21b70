"""The documentation stays true: the API reference is current, links resolve, examples compile."""
