"""The test suite: one folder per part of the library or kind of threat."""
