"""The live web dashboard, served by the same app as the HTTP API (`/ui/`).

Server-rendered HTML (Jinja2, autoescaped) with a little JavaScript that
follows the events stream (`/v1/events`) and writes task data only as text
and attributes. `create_app(service, dashboard=True, read_only=False)` adds
`dashboard_routes`; docs/dashboard.md says what each page shows and how it
is protected.
"""

from .render import PREFIX
from .routes import dashboard_routes

__all__ = ["PREFIX", "dashboard_routes"]
