"""Pieces of the reference trainer in one process: config, model, schedule, data, checkpoints."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from contract.env import PLAN_FILE_ENV
from contract.jobdir import JobDir
from runtime.train import checkpoint, data
from runtime.train.config import ConfigError, TrainConfig, parse_config
from runtime.train.loop import Trainer
from runtime.train.model import ModelConfig, Transformer, apply_rotary, rotary_tables
from runtime.train.schedule import lr_at

# ---- config ------------------------------------------------------------------------------


def test_defaults_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCALECTL_JOB_DIR", raising=False)
    cfg = parse_config([])
    assert cfg == TrainConfig(ffn_hidden=352)  # 8/3 * 128 = 341.3, up to a multiple of 32
    cfg = parse_config(["--hidden", "64", "--no-tied-embeddings", "--lr", "1e-2", "--steps", "9"])
    assert (cfg.hidden, cfg.tied_embeddings, cfg.lr, cfg.steps) == (64, False, 1e-2, 9)
    monkeypatch.setenv("SCALECTL_JOB_DIR", "/somewhere")
    assert parse_config([]).job_dir == "/somewhere"
    assert parse_config(["--job-dir", "/flag"]).job_dir == "/flag"


def _plan(tmp_path: Path, **model: object) -> Path:
    plan = {
        "model": {
            "num_layers": 3,
            "hidden_size": 96,
            "num_attention_heads": 6,
            "num_kv_heads": 2,
            "ffn_hidden_size": 256,
            "vocab_size": 512,
            "tied_embeddings": True,
            **model,
        },
        "training": {"seq_len": 32, "global_batch_seqs": 24},
        "layout": {"micro_batch": 2, "dp": 4},
        "estimate": {"step_time_s": 1.0},
    }
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    return path


def test_plan_fields_and_flag_precedence(tmp_path: Path) -> None:
    cfg = parse_config(["--plan", str(_plan(tmp_path))])
    shape = (cfg.layers, cfg.hidden, cfg.heads, cfg.kv_heads, cfg.ffn_hidden, cfg.vocab)
    assert shape == (3, 96, 6, 2, 256, 512)
    assert (cfg.tied_embeddings, cfg.seq_len, cfg.micro_batch, cfg.grad_accum) == (True, 32, 2, 3)
    cfg = parse_config(["--plan", str(_plan(tmp_path)), "--layers", "1", "--micro-batch", "8"])
    assert (cfg.layers, cfg.hidden, cfg.micro_batch) == (1, 96, 8)


def test_plan_file_from_the_environment_when_no_flag_names_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The launcher gives every rank of a job launched from a Plan SCALECTL_PLAN_FILE.
    monkeypatch.setenv(PLAN_FILE_ENV, str(_plan(tmp_path)))
    assert (parse_config([]).layers, parse_config([]).hidden) == (3, 96)
    other = tmp_path / "other"
    other.mkdir()
    assert parse_config(["--plan", str(_plan(other, num_layers=5))]).layers == 5
    monkeypatch.setenv(PLAN_FILE_ENV, str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="no such file"):
        parse_config([])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--heads", "3", "--hidden", "64"], "--heads 3: must divide the hidden size 64"),
        (["--heads", "8", "--hidden", "72"], "--heads 8: hidden / heads must be even"),
        (["--kv-heads", "3"], "--kv-heads 3: must divide the 4 query heads"),
        (["--vocab", "100"], "--vocab 100: must be at least 257"),
        (["--steps", "0"], "--steps 0: must be at least 1"),
        (["--min-lr", "1"], "--min-lr 1.0: must be between 0 and --lr"),
        (["--device", "tpu"], "--device tpu: use auto, cpu or cuda"),
        (["--layers", "two"], "argument --layers: invalid int value: 'two'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--plan", "/nonexistent/plan.json"], "no such file"),
    ],
)
def test_bad_flags_name_the_flag(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(argv)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_plan_values_name_the_plan_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"plan model\.num_kv_heads 4: must divide the 6"):
        parse_config(["--plan", str(_plan(tmp_path, num_kv_heads=4))])
    with pytest.raises(ConfigError, match=r"plan model\.num_layers '3': expected int"):
        parse_config(["--plan", str(_plan(tmp_path, num_layers="3"))])
    plan = json.loads(_plan(tmp_path).read_text())
    plan["training"]["global_batch_seqs"] = 20  # 20 / (4 x 2) micro-steps
    (tmp_path / "odd.json").write_text(json.dumps(plan))
    with pytest.raises(ConfigError, match=r"layout\.micro_batch\) 2\.5: expected int"):
        parse_config(["--plan", str(tmp_path / "odd.json")])
    assert parse_config(["--plan", str(tmp_path / "odd.json"), "--grad-accum", "2"]).grad_accum == 2
    (tmp_path / "not_a_plan.json").write_text('{"model": {}}')
    with pytest.raises(ConfigError, match="is this a planner Plan"):
        parse_config(["--plan", str(tmp_path / "not_a_plan.json")])


def test_unwritable_job_dir_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    cfg = parse_config(["--job-dir", str(tmp_path / "file" / "job")])
    with pytest.raises(ConfigError, match="cannot create it"):
        Trainer(cfg).setup()


# ---- model -------------------------------------------------------------------------------


def _tiny(**changes: object) -> ModelConfig:
    base = {
        "layers": 2,
        "hidden": 32,
        "heads": 4,
        "kv_heads": 2,
        "ffn_hidden": 64,
        "vocab": 257,
        "seq_len": 16,
        "tied": False,
    }
    return ModelConfig(**{**base, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize("kv_heads", [1, 2, 4])
def test_model_shapes_and_causality(kv_heads: int) -> None:
    torch.manual_seed(0)
    model = Transformer(_tiny(kv_heads=kv_heads)).eval()
    tokens = torch.randint(0, 257, (2, 16))
    logits = model(tokens)
    assert logits.shape == (2, 16, 257)
    changed = tokens.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 257
    # Changing tokens at positions >= 10 leaves every logit before position 10 unchanged.
    torch.testing.assert_close(model(changed)[:, :10], logits[:, :10])
    assert not torch.allclose(model(changed)[:, 10:], logits[:, 10:])
    assert model.layers[0].attn.wk.weight.shape == (kv_heads * 8, 32)


def test_tied_embeddings_share_one_parameter() -> None:
    tied, untied = Transformer(_tiny(tied=True)), Transformer(_tiny())
    assert tied.output.weight is tied.embed.weight
    untied_count = sum(p.numel() for p in untied.parameters())
    assert untied_count - sum(p.numel() for p in tied.parameters()) == 257 * 32


def test_rotary_is_a_rotation_relative_in_position() -> None:
    cos, sin = rotary_tables(16, 8, 10_000.0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    q_all, k_all = q.expand(1, 1, 16, 8), k.expand(1, 1, 16, 8)
    rq, rk = apply_rotary(q_all, cos, sin), apply_rotary(k_all, cos, sin)
    torch.testing.assert_close(rq.norm(dim=-1), q_all.norm(dim=-1))
    # <R_m q, R_n k> depends only on m - n (RoFormer eq. 16).
    dots = (rq[0, 0, :, None, :] * rk[0, 0, None, :, :]).sum(-1)
    torch.testing.assert_close(dots[5, 2], dots[12, 9])


# ---- schedule ----------------------------------------------------------------------------


def test_lr_schedule_warmup_peak_cosine_floor() -> None:
    kwargs = {"lr": 1.0, "min_lr": 0.1, "warmup_steps": 10, "total_steps": 110}
    assert lr_at(1, **kwargs) == pytest.approx(0.1)
    assert lr_at(10, **kwargs) == pytest.approx(1.0)
    assert lr_at(60, **kwargs) == pytest.approx(0.55)  # half way down the cosine
    assert lr_at(110, **kwargs) == pytest.approx(0.1)
    assert lr_at(500, **kwargs) == pytest.approx(0.1)
    after = [lr_at(s, **kwargs) for s in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(after))
    assert lr_at(5, lr=1.0, min_lr=0.0, warmup_steps=0, total_steps=10) == pytest.approx(0.5)


# ---- data --------------------------------------------------------------------------------


def test_corpus_split_by_document_is_disjoint_and_stable() -> None:
    corpus = data.build_corpus("pydoc", 64)
    docs = data.load_documents("pydoc")
    held_out = [name for i, (name, _) in enumerate(docs) if i % data.VAL_EVERY == data.VAL_OFFSET]
    assert corpus.documents == (len(docs) - len(held_out), len(held_out))
    assert int((corpus.val == data.EOD).sum()) == len(held_out)
    train_bytes = corpus.train.astype(np.uint8).tobytes()
    for name, text in docs:
        inside = text.encode()[:2000] in train_bytes
        assert inside == (name not in held_out), name
    assert data.build_corpus("pydoc", 64).fingerprint == corpus.fingerprint


def test_batches_depend_only_on_seed_step_rank_and_world_size() -> None:
    tokens = np.arange(10_000, dtype=np.uint16) % 257

    def windows(rank: int, world: int, micro: int, step: int = 5, seed: int = 1) -> np.ndarray:
        return data.micro_batch_windows(
            tokens,
            seed=seed,
            step=step,
            micro_step=micro,
            rank=rank,
            world_size=world,
            micro_batch=3,
            seq_len=16,
        )

    assert np.array_equal(windows(1, 2, 1), windows(1, 2, 1))
    assert not np.array_equal(windows(1, 2, 1, step=6), windows(1, 2, 1))
    assert not np.array_equal(windows(1, 2, 1, seed=2), windows(1, 2, 1))
    # Ranks and micro-steps partition one global sequence of windows, in order.
    starts = data.window_starts(1, 5, 2 * 2 * 3, len(tokens) - 16)
    parts = [windows(r, 2, m)[:, 0] for m in range(2) for r in range(2)]
    assert np.array_equal(np.concatenate(parts), tokens[starts])
    # Consecutive tokens: targets are inputs shifted by one.
    w = windows(0, 1, 0)
    assert w.shape == (3, 17) and w.dtype == np.int64
    assert np.array_equal(w[:, 1:], (w[:, :-1] + 1) % 257)


def test_eval_windows_cover_the_held_out_text() -> None:
    tokens = np.arange(1000, dtype=np.uint16)
    windows = data.eval_windows(tokens, 5, 16)
    assert windows[0, 0] == 0 and windows[-1, -1] == 999
    assert np.array_equal(windows, data.eval_windows(tokens, 5, 16))


def test_data_sources(tmp_path: Path) -> None:
    for i in range(12):
        (tmp_path / f"doc{i:02d}.txt").write_text(f"document {i} " * 50)
    corpus = data.build_corpus(str(tmp_path), 32)
    assert corpus.documents == (11, 1)
    single = tmp_path / "book.txt"
    single.write_text("\n\n".join(f"paragraph {i} " * 100 for i in range(400)))
    assert sum(data.build_corpus(str(single), 32).documents) > 10
    with pytest.raises(data.DataError, match="no such file"):
        data.build_corpus(str(tmp_path / "missing"), 32)
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "a.txt").write_text("short")
    with pytest.raises(data.DataError, match="fewer than --seq-len"):
        data.build_corpus(str(tmp_path / "tiny"), 32)


# ---- checkpoint directories --------------------------------------------------------------


def _fake_checkpoint(job: JobDir, name: str, complete: bool = True) -> Path:
    path = job.checkpoints_dir / name
    path.mkdir(parents=True)
    (path / "__0_0.distcp").write_bytes(b"x")
    if complete:
        (path / checkpoint.DCP_METADATA).write_bytes(b"m")
        (path / checkpoint.STATE_FILE).write_text("{}")
    return path


def test_latest_skips_incomplete_and_stale_dirs_are_cleaned(tmp_path: Path) -> None:
    job = JobDir(tmp_path)
    job.create()
    _fake_checkpoint(job, "step_5")
    _fake_checkpoint(job, "step_10")
    _fake_checkpoint(job, "step_15", complete=False)  # committed by hand, missing files
    _fake_checkpoint(job, "tmp-step_20", complete=False)
    _fake_checkpoint(job, ".trash-step_1")
    (job.checkpoints_dir / "notes.txt").write_text("someone else's file")
    assert checkpoint.find_latest(job) == (10, job.checkpoint_dir(10))
    assert checkpoint.clean_stale(job) == [".trash-step_1", "tmp-step_20"]
    names = sorted(p.name for p in job.checkpoints_dir.iterdir())
    assert names == ["notes.txt", "step_10", "step_15", "step_5"]


def test_prune_keeps_the_newest(tmp_path: Path) -> None:
    job = JobDir(tmp_path)
    job.create()
    for step in (5, 10, 15, 20):
        _fake_checkpoint(job, f"step_{step}")
    assert checkpoint.prune(job, keep=2) == [5, 10]
    assert [s for s, _ in job.complete_checkpoints()] == [15, 20]
    assert not any(p.name.startswith(".trash") for p in job.checkpoints_dir.iterdir())


def test_initial_loss_is_uniform() -> None:
    """An untrained model predicts nearly uniformly: cross-entropy close to ln(257)."""
    torch.manual_seed(0)
    model = Transformer(_tiny())
    tokens = torch.randint(0, 257, (4, 16))
    loss = torch.nn.functional.cross_entropy(model(tokens).flatten(0, 1), tokens.flatten())
    assert abs(loss.item() - math.log(257)) < 0.05
