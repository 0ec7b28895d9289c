"""tests/validation/public.yaml is a copy of the shared file (CI may not have ../shared)."""

from __future__ import annotations

from pathlib import Path

import pytest

COPY = Path(__file__).resolve().parent / "public.yaml"
REPO = Path(__file__).resolve().parents[2]
SHARED = [
    Path("/work/shared/validation/public.yaml"),
    REPO.parent / "shared/validation/public.yaml",
]


def test_copy_matches_the_shared_file() -> None:
    originals = [path for path in SHARED if path.is_file()]
    if not originals:
        pytest.skip("no shared validation/public.yaml on this machine")
    for original in originals:
        assert COPY.read_bytes() == original.read_bytes(), (
            f"{COPY} differs from {original}; copy the shared file over it"
        )


def test_copy_has_every_section() -> None:
    import yaml

    data = yaml.safe_load(COPY.read_text(encoding="utf-8"))
    assert {"hardware", "throughput", "memory", "iteration_time", "energy"} <= set(data)
