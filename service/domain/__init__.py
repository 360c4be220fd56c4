"""The pure core: user values, the planner and its policies. No I/O, no clock, no frameworks."""
