"""The contract between the launcher, the runtime and the TUI (ARCHITECTURE.md).

What one part writes and another reads, defined once: the job-directory layout and its
append/read helpers (``contract.jobdir``), every ``SCALECTL_*`` environment variable
(``contract.env``), every event kind of ``events.jsonl`` with its fields
(``contract.event_kinds``) and its writer and reader (``contract.events``), ``job.json``
(``contract.job``) and the ``plan.json`` Plan document with the plan-against-measured
arithmetic (``contract.plan``).

It imports none of launcher, runtime, tui or planner (contract/ruff.toml and
tests/contract enforce it). ``jobdir``, ``env``, ``event_kinds`` and ``events`` are
standard library only: every rank imports them and must not pay for pydantic; ``job``
and ``plan`` use pydantic. This package file imports nothing, so ``import contract.env``
stays light.
"""
