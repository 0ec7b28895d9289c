"""``scalectl plan ...`` through the root CLI: output, defaults, and one-line errors (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scalectl.cli import main

BASE = [
    "plan",
    "estimate",
    "--model",
    "llama3-8b",
    "--gpu",
    "H100",
    "--gpus",
    "64",
    "--seq-len",
    "8k",
    "--global-batch-tokens",
    "4M",
]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_json_output_and_stated_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run([*BASE, "--tp", "2", "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert list(data) == ["layout", "memory_gib", "fits", "step", "train", "error_band"]
    assert data["layout"]["dp"] == 32 and data["layout"]["sequence_parallel"] is True
    assert "default: --dp 32" in err and "default: --tokens" in err
    assert "default: --recompute none" in err


def test_rich_tables(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        [
            *BASE,
            "--tp",
            "8",
            "--pp",
            "2",
            "--zero",
            "3",
            "--recompute",
            "full",
            "--micro-batch",
            "2",
            "--interleave",
            "2",
            "--tokens",
            "15T",
        ],
        capsys,
    )
    assert code == 0
    for text in (
        "Memory per GPU",
        "One step",
        "GPU-hours",
        "CO2",
        "pipeline_bubble",
        "sharding=zero3",
        "default: --dp 4",
    ):
        assert text in out, text


def test_config_json_and_gpu_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "tiny" / "config.json"
    cfg.parent.mkdir()
    cfg.write_text(json.dumps({"n_embd": 256, "n_layer": 4, "n_head": 4, "vocab_size": 1000}))
    spec = tmp_path / "cpu.yaml"
    spec.write_text(
        "name: cpu\nbf16_dense_tflops: 0.4\nhbm_gib: 8\nhbm_tb_s: 0.02\n"
        "intra_node_gb_s: 5\ninter_node_gb_s_per_gpu: 1\ntdp_w: 65\nidle_w: 5\n"
        "price_usd_per_gpu_hour: 0\n"
    )
    code, out, err = run(
        [
            "plan",
            "estimate",
            "--model",
            str(cfg),
            "--gpu-spec",
            str(spec),
            "--gpus",
            "2",
            "--gpus-per-node",
            "2",
            "--seq-len",
            "256",
            "--global-batch",
            "8",
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    assert json.loads(out)["fits"] is True


def test_catalog_listings(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["plan", "gpus"], capsys)
    assert code == 0 and "Accelerators" in out and "A100-SXM-80GB" in out
    code, out, _ = run(["plan", "gpus", "--json"], capsys)
    assert code == 0 and {"MI300X", "H200-SXM-141GB"} <= {g["name"] for g in json.loads(out)}
    code, out, _ = run(["plan", "models", "--json"], capsys)
    assert code == 0 and any(m["name"] == "mixtral-8x7b" for m in json.loads(out))


ERRORS = [
    (["--gpu", "H10"], "unknown GPU 'H10'; did you mean"),
    (["--model", "llama3-7b"], "unknown model preset 'llama3-7b'; did you mean"),
    (["--tp", "3", "--gpus", "96"], "tp=3 does not divide num_attention_heads=32"),
    (["--tp", "3", "--dp", "4"], "dp·tp·pp·cp = 4·3·1·1 = 12 but the cluster has 64 GPUs"),
    (["--tp", "7"], "--tp·--pp·--cp = 7 does not divide --gpus 64"),
    (["--gpus", "0"], "--gpus: must be a positive count"),
    (["--gpus", "-8"], "--gpus: must be a positive count"),
    (["--tp", "0"], "--tp: must be a positive whole number"),
    (["--micro-batch", "-1"], "--micro-batch: must be a positive whole number"),
    (["--tokens", "15Q"], "--tokens: '15Q' is not a count"),
    (["--seq-len", "abc"], "--seq-len: 'abc' is not a count"),
    (["--global-batch", "512"], "give exactly one of --global-batch"),
    (["--recompute", "sometimes"], "recompute"),
    (["--zero", "hsdp"], "--zero hsdp needs --hsdp-shard"),
    (["--precision", "fp8", "--gpu", "A100"], "precision fp8 needs FP8 tensor cores"),
    (["--pp", "64"], "pp=64 exceeds the 32 layers"),
    (["--kernels", "jit"], "kernels: Input should be 'fused' or 'eager'"),
    (["--loss-chunks", "0"], "loss_chunks: Input should be greater than or equal to 1"),
    (["--precision", "bf16-true"], "precision: Input should be 'bf16', 'bf16-pure'"),
]


@pytest.mark.parametrize(("extra", "message"), ERRORS, ids=[e[1][:30] for e in ERRORS])
def test_bad_input_is_one_line_and_exit_2(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = list(BASE)
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    code, out, err = run(argv, capsys)
    assert code == 2, (out, err)
    assert err.startswith("error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_missing_config_key_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(
        json.dumps(
            {
                "hidden_size": 64,
                "num_attention_heads": 4,
                "intermediate_size": 128,
                "vocab_size": 100,
            }
        )
    )
    argv = [*BASE]
    argv[argv.index("--model") + 1] = str(cfg)
    code, _, err = run(argv, capsys)
    assert code == 2 and "missing key 'num_hidden_layers'" in err


def test_help_is_cheap() -> None:
    import subprocess
    import sys

    probe = (
        "import sys\nfrom scalectl.cli import main\ntry:\n    main(['plan', '--help'])\n"
        "except SystemExit:\n    pass\nprint([m for m in ('numpy', 'yaml', 'planner.core', "
        "'planner.specs') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("[]"), result.stdout
