"""What starts a reconcile: the schedule, internal events and the HTTP API."""
