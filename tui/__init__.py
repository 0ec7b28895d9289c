"""Terminal UI (Textual): jobs, telemetry, logs, and plan against reality."""
