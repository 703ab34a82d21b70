"""Metrics: the observer hooks, the Prometheus exposition and its HTTP endpoint."""
