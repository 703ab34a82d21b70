"""Hostile input and conditions: bad values, a full disk, lifecycle misuse, purge."""
