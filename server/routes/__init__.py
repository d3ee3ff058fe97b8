"""The route modules, one per resource, each with register(app); app.py registers them in this order."""

from __future__ import annotations

from server.routes import associations, benchmarks, datasets, me, mlcubes, models, results, site, users

MODULES = (users, me, mlcubes, models, benchmarks, datasets, associations, results, site)
