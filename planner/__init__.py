"""Planner: will it fit, which layout is fastest, how long, how much energy, cost and CO2.

Pure functions over pydantic specs and catalog data files; no torch, no I/O beyond the
catalog. The public API is re-exported here as it lands.
"""
