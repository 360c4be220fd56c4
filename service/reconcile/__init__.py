"""The imperative shell around the planner: gather, plan, apply, record."""
