"""Runtime: the node agent, telemetry, ``runtime.progress`` and the reference trainer.

Nothing here knows which backend started it beyond environment variables.
"""
