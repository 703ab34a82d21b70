"""Prometheus metrics for a task service."""
