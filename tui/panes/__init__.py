"""The four tabs of the TUI: jobs, telemetry, logs, planner."""
