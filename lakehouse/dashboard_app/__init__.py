"""The overview dashboard of the embedded stack: the panels of the Grafana JSON
(`grafana/dashboards/lakehouse_overview.json`) rendered by a small Dash service,
live, as the read-only PostgreSQL role, behind a login. Grafana, where a binary
exists, runs from the same JSON; this service needs none.

    render.py   panel JSON + rows -> what a panel shows (pure, fast tests)
    queries.py  the panels' SQL as the reader role, errors kept per panel
    app.py      the Dash page, the refresh callback, the login
    __main__.py the server (waitress on 127.0.0.1:DASHBOARD_PORT)
"""
