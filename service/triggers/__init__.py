"""What starts a reconcile in the running service, and the HTTP API around it.

Triggers only say what to look at; the runner re-reads both sides. The leader (`leader.py`)
runs the `duties.py`: the schedule (`scheduler.py`) and on-demand runs feed the bulk lane
(`lane.py`), queued user events feed the consumer (`events.py`) whose runs go ahead of bulk
work in the Service's one pacer (`conversations.ratelimit.urgent`). Every replica serves the
HTTP API (`http.py`, `webhooks.py`, `health.py`, `openapi.py`, guarded by `auth.py`).
`service.app.create_app` wires it all.
"""
