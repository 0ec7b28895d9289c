"""The trainer's kernels knobs: ``--compile`` equals eager, the chunked cross-entropy equals
the unchunked one and holds fewer logits at its peak, and fp8 / compile / chunking are
refused with exit 2 where they cannot run.

Tolerances: the compiled blocks run the same fp32 arithmetic with fused elementwise
kernels; over a few AdamW steps the losses agree to ~1e-7 relative on torch 2.13 CPU
(observed: equal to every printed digit), so ``COMPILE_REL_TOL`` is 1e-5. The chunked
loss only reorders fp32 sums: ``CHUNK_REL_TOL`` 1e-6 on the loss and the gradients.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from polling import run_to_end
from trainer_harness import REPO, TINY, assert_refused, describe, trainer_env

from runtime.train import kernels, parallel
from runtime.train.config import parse_config
from runtime.train.loss import AUTO_CHUNKS, LiveBytes, LossChunksError, resolve_loss_chunks
from runtime.train.model import ModelConfig, Transformer

COMPILE_REL_TOL = 1e-5
CHUNK_REL_TOL = 1e-6
WORKER = Path(__file__).with_name("kernels_worker.py")


def _train(args: list[str], **env: str) -> Any:
    """The trainer as a command, one process (a fresh interpreter, so $CXX is read anew)."""
    environment = {**trainer_env(None), **env}
    return run_to_end([sys.executable, "-m", "runtime.train", *TINY, *args],
                      env=environment, cwd=REPO)  # fmt: skip


# ---- --compile -------------------------------------------------------------------------


@pytest.mark.slow
def test_compiled_blocks_train_as_eager() -> None:
    proc = run_to_end([sys.executable, str(WORKER), "4"], env=trainer_env(None), cwd=REPO)
    assert proc.returncode == 0, describe(proc)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"compiled run (compilation included): {result['compile_s']} s")
    assert result["compiled_blocks"] == 2  # both blocks wrapped
    assert result["graphs"] >= 1  # and dynamo really compiled (one graph serves both)
    eager, compiled = result["eager"], result["compiled"]
    rel = max(abs(a - b) / abs(b) for a, b in zip(compiled, eager, strict=True))
    assert len(eager) == 4 and rel <= COMPILE_REL_TOL, (compiled, eager)
    assert eager[-1] < eager[0] - 0.3  # it trains: not a comparison of flat lines


def test_compile_without_a_cxx_compiler_exits_2(tmp_path: Path) -> None:
    job = tmp_path / "job"
    run = _train(["--compile", "--steps", "1", "--job-dir", str(job)], CXX="/nonexistent/g++")
    assert run.returncode == 2, describe(run)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --compile: cannot compile on cpu")
    assert "install g++" in lines[0]
    assert not job.exists()


def test_compile_under_tensor_parallelism_is_refused() -> None:
    with pytest.raises(kernels.KernelError, match=r"^--compile: with --tp 2 the compiled"):
        kernels.check_compile("cpu", tp=2)
    kernels.check_compile("cpu", tp=1)  # this machine has g++


def test_compile_comes_from_the_plan(tmp_path: Path) -> None:
    plan = {
        "model": {"num_layers": 1, "hidden_size": 32, "num_attention_heads": 4},
        "training": {"seq_len": 16, "global_batch_seqs": 2, "compile": True},
        "layout": {"dp": 1, "micro_batch": 2},
    }
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    assert parse_config(["--plan", str(path)]).compile is True
    assert parse_config(["--plan", str(path), "--no-compile"]).compile is False


# ---- chunked cross-entropy ---------------------------------------------------------------

SHAPE = ModelConfig(layers=1, hidden=32, heads=4, kv_heads=2, ffn_hidden=96, vocab=2048,
                    seq_len=64, tied=False)  # fmt: skip
"""Logits dominate: 2048 vocabulary rows against a width of 32."""


def _loss_and_grads(chunks: int) -> tuple[float, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = Transformer(SHAPE)
    tokens = torch.randint(0, SHAPE.vocab, (4, SHAPE.seq_len + 1))
    loss = model(tokens[:, :-1], tokens[:, 1:], chunks)
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters()}  # type: ignore[union-attr]


@pytest.mark.parametrize("chunks", [2, 5, AUTO_CHUNKS])
def test_chunked_loss_and_gradients_equal_unchunked(chunks: int) -> None:
    want_loss, want = _loss_and_grads(1)
    got_loss, got = _loss_and_grads(chunks)
    assert abs(got_loss - want_loss) / want_loss <= CHUNK_REL_TOL
    for name, grad in want.items():
        scale = grad.abs().max().item()
        assert (got[name] - grad).abs().max().item() <= CHUNK_REL_TOL * scale + 1e-12, name


def _loss_peak_bytes(chunks: int) -> int:
    """Peak bytes allocated by the projection and cross-entropy, forward and backward."""
    torch.manual_seed(0)
    output = torch.nn.Linear(SHAPE.hidden, SHAPE.vocab, bias=False)
    hidden = torch.randn(4, SHAPE.seq_len, SHAPE.hidden, requires_grad=True)
    targets = torch.randint(0, SHAPE.vocab, (4, SHAPE.seq_len))
    from runtime.train.loss import chunked_cross_entropy

    with LiveBytes() as meter:
        chunked_cross_entropy(output, hidden, targets, chunks).backward()
    return meter.peak


def test_chunking_lowers_the_logits_peak_below_the_planners_count() -> None:
    """fp32: the planner counts 8 bytes per logit (constants.yaml logits_stored_bytes: the
    fp32 logits and the softmax the cross-entropy keeps). Unchunked, the backward pass
    holds more (the gradients of the log-probabilities and of the logits besides the
    saved log-probabilities); in 8 chunks it holds less."""
    logits = 4 * SHAPE.seq_len * SHAPE.vocab
    planner_bytes = 8 * logits
    whole, chunked = _loss_peak_bytes(1), _loss_peak_bytes(AUTO_CHUNKS)
    print(
        f"loss peak, bytes per logit: unchunked {whole / logits:.2f}, {AUTO_CHUNKS} chunks "
        f"{chunked / logits:.2f}, planner counts {planner_bytes / logits:.0f}"
    )
    assert whole > planner_bytes > chunked
    assert chunked < 0.6 * whole


def test_loss_chunks_resolve_and_refuse() -> None:
    assert resolve_loss_chunks(0, tp=1, seq_len=64) == AUTO_CHUNKS
    assert resolve_loss_chunks(0, tp=1, seq_len=4) == 4
    assert resolve_loss_chunks(0, tp=2, seq_len=64) == 1
    assert resolve_loss_chunks(3, tp=1, seq_len=64) == 3
    with pytest.raises(LossChunksError, match=r"^--loss-chunks 4: with --tp 2 the logits"):
        resolve_loss_chunks(4, tp=2, seq_len=64)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--loss-chunks", "999"], "--loss-chunks 999: more chunks than the 64 tokens"),
        (["--loss-chunks", "-1"], "--loss-chunks -1: must be 0 (derived) or more"),
        (["--precision", "fp8"], "--precision fp8: needs a CUDA GPU of compute capability 8.9"),
    ],
)
def test_knobs_this_device_cannot_run_exit_2_before_any_file(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    message: str,
) -> None:
    argv = [*TINY, "--device", "cpu", *argv]
    assert_refused(argv, message, tmp_path / "job", capsys, monkeypatch)


# ---- fp8 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "capability", "torchao", "reason"),
    [
        ("cpu", None, True, "needs a CUDA GPU of compute capability 8.9 or more; this run is on"),
        ("cuda", (8, 0), True, "this GPU has compute capability 8.0; fp8 tensor cores need 8.9"),
        ("cuda", (9, 0), False, "torchao is not installed (pip install torchao)"),
        ("cuda", (8, 9), True, None),
    ],
)  # fmt: skip
def test_fp8_needs_cuda_hopper_class_and_torchao(
    device: str, capability: tuple[int, int] | None, torchao: bool, reason: str | None
) -> None:
    got = kernels.fp8_unavailable(device, capability, torchao)
    assert got == reason if reason is None else (got or "").startswith(reason)


def test_fp8_refusals_name_the_knob(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(kernels.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(kernels.KernelError, match=r"^--precision fp8: torchao is not installed"):
        parallel.resolve_precision("fp8", cuda)
    monkeypatch.setattr(kernels, "check_fp8", lambda device: None)  # as on an H100 with torchao
    with pytest.raises(parallel.LayoutError, match=r"^--precision fp8: with --tp 2"):
        parallel.resolve_precision("fp8", cuda, tp=2)
    assert parallel.resolve_precision("fp8", cuda, tp=1) == "fp8"
