"""Job ids: short, unique enough, and sortable by creation time as plain strings."""

from __future__ import annotations

import re
import secrets
import time

_JOB_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{4}\Z")


def new_job_id(now_s: float | None = None, random_hex: str | None = None) -> str:
    """``YYYYMMDD-HHMMSS-xxxx``: UTC creation second and 16 random bits.

    UTC, so ids sort by creation time across time-zone and daylight-saving changes.
    Two ids made in the same second by chance share 1 in 65,536; callers that need
    uniqueness (the registry, a job directory) check and draw again.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now_s is None else now_s))
    suffix = random_hex if random_hex is not None else secrets.token_hex(2)
    return f"{stamp}-{suffix}"


def is_job_id(text: str) -> bool:
    """True when ``text`` has the shape of an id made by :func:`new_job_id`."""
    return bool(_JOB_ID.match(text))
