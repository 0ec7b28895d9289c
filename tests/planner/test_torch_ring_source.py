"""``planner.formulas.kernels.torch_ring_attention_bytes`` and
``planner.formulas.memory.torch_ring_workspace_bytes`` against torch's own ring attention
code (torch 2.13 ``_templated_ring_attention`` and its backward), run on CPU over gloo
with the bytes every non-kernel op moves counted, and the peak of what the backward
allocates (ring_traffic_worker.py).

The formula prices the slowest rank: the last, which takes the full-size branch at every
later step. Its count matches the code to within the log-sum-exp ops the formula leaves
out (4 bytes per token and head, 1/32 of a 64-wide bf16 head per pass); every other rank
moves less."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from planner.formulas.kernels import torch_ring_attention_bytes
from planner.formulas.memory import torch_ring_workspace_bytes

WORKER = Path(__file__).with_name("ring_traffic_worker.py")
LSE_SHARE = 0.03
"""What the uncounted log-sum-exp merges may add, relative (1/32 per merge pass)."""


def _ranks(cp: int, tmp_path: Path) -> list[dict[str, int]]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(cp),
           "--standalone", str(WORKER), "256", str(tmp_path)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(cp)]


@pytest.mark.parametrize("cp", [2, 4, 8])
def test_the_formula_is_what_torchs_ring_code_moves(cp: int, tmp_path: Path) -> None:
    ranks = _ranks(cp, tmp_path)
    q, kv = ranks[0]["q_bytes"], ranks[0]["kv_bytes"]
    fwd, bwd = torch_ring_attention_bytes(float(q), float(kv), float(cp))
    last = ranks[-1]
    assert fwd <= last["fwd_bytes"] <= fwd * (1 + LSE_SHARE)
    assert bwd <= last["bwd_bytes"] <= bwd * (1 + LSE_SHARE)
    # The formula is the slowest rank's: no rank moves more.
    assert max(r["fwd_bytes"] for r in ranks) == last["fwd_bytes"]
    assert max(r["bwd_bytes"] for r in ranks) <= bwd * (1 + LSE_SHARE)
    # The backward's peak, each exchange awaited at once: all the workspace holds but the
    # flash kernel's own FP32 dQ accumulator (2 Q), which the CPU op does not allocate;
    # the previous dK/dV send (2 KV) is counted when gloo has not let go of it yet.
    held = torch_ring_workspace_bytes(float(q), float(kv), float(cp)) - 2 * q
    peaks = [r["bwd_peak_bytes"] for r in ranks]
    assert held - 2 * kv <= max(peaks) <= held
