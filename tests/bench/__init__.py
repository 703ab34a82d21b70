"""Smoke tests of the benchmark scripts (the parts that need no extra server)."""
