"""Prometheus metrics for a task service.

`hooks.MetricsHooks` is the observer interface the runtime calls (it knows
nothing else of metrics); `prometheus.PrometheusMetrics` implements it with a
`CollectorRegistry` of its own. `series` holds the plain-Python counts and
histograms behind it and builds families from them, `collectors` the
collectors that run at a scrape (the lifecycle counts, the store's figures),
and `server` the built-in HTTP endpoint and the WSGI app.
"""
