"""Sliding-window attention (ModelSpec ``sliding_window``, ``full_attention_every``): the
FLOPs a windowed layer needs and the tiles a fused kernel runs, checked by counting; the
layer pattern of each config.json family against transformers' own ``layer_types``; the
estimate, the search, the export and the trainer each doing what the window implies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import planner
from planner.errors import PlanInputError
from planner.export_frameworks import framework_arguments
from planner.export_plan import ExportError
from planner.formulas import flops
from planner.hf_config import model_from_hf_dict
from planner.render import window_line
from runtime.train.config import ConfigError, parse_config
from tests.planner.export_fixtures import export_of, flag_values

BLOCK = 128.0
"""The fused kernel's tile (constants.yaml flash_causal_block)."""
MISTRAL = {
    "model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336,
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "vocab_size": 32000, "sliding_window": 4096,
}  # fmt: skip
"""Mistral 7B v0.1's config.json (the keys the planner reads)."""


def _read(cfg: dict[str, Any]) -> planner.ModelSpec:
    return model_from_hf_dict(cfg, "m", Path("config.json"))


@pytest.mark.parametrize(("seq", "window"), [(64, 1), (64, 16), (64, 63), (64, 64), (64, 500)])
def test_key_fraction_counts_the_pairs_a_window_keeps(seq: int, window: int) -> None:
    pairs = sum(min(i, window) for i in range(1, seq + 1))
    assert flops.windowed_key_fraction(seq, window) == pytest.approx(pairs / seq**2)
    # A window no shorter than the sequence is causal attention; no windowed layers, too.
    if window >= seq:
        assert flops.windowed_key_fraction(seq, window) == flops.causal_key_fraction(seq)
    assert flops.model_key_fraction(seq, window, 0.0) == flops.causal_key_fraction(seq)
    half = flops.model_key_fraction(seq, window, 0.5)
    assert half == pytest.approx(
        (flops.causal_key_fraction(seq) + flops.windowed_key_fraction(seq, window)) / 2
    )


def _tiles_run(seq: int, window: int, block: int) -> float:
    """Fraction of the score matrix in the tiles a fused kernel cannot skip: those holding
    at least one key j of a query i with i - window < j <= i."""
    tiles = 0
    for r in range(seq // block):
        first_query, last_query = r * block, r * block + block - 1
        lowest_key = max(0, first_query - window + 1)
        tiles += last_query // block - lowest_key // block + 1
    return tiles * block * block / seq**2


@pytest.mark.parametrize(("seq", "window"), [(32768, 4096), (8192, 1024), (131072, 128)])
def test_fused_kernel_runs_the_windows_tiles(seq: int, window: int) -> None:
    executed = flops.windowed_executed_key_fraction(seq, 1.0, BLOCK, window)
    assert executed == pytest.approx(_tiles_run(seq, window, int(BLOCK)), rel=0.03)
    # Unfused attention masks the whole matrix and computes all of it.
    assert flops.windowed_executed_key_fraction(seq, 0.0, BLOCK, window) == 1.0
    # A window of the whole sequence runs the causal tiles.
    assert flops.windowed_executed_key_fraction(seq, 1.0, BLOCK, seq) == (
        flops.executed_key_fraction(seq, 1.0, BLOCK)
    )


HF_FAMILIES = [
    ("mistral", {}),
    ("gemma2", {"num_hidden_layers": 7}),
    ("gemma3_text", {"num_hidden_layers": 26}),
    ("gemma3_text", {"num_hidden_layers": 12, "sliding_window_pattern": 4}),
    ("gpt_oss", {"num_hidden_layers": 36}),
    ("cohere2", {"num_hidden_layers": 10}),
    ("qwen2", {"use_sliding_window": True, "max_window_layers": 0}),
    ("qwen3", {"use_sliding_window": False, "sliding_window": 4096}),
]


@pytest.mark.parametrize(("model_type", "changes"), HF_FAMILIES)
def test_layer_pattern_matches_transformers_layer_types(
    model_type: str, changes: dict[str, Any]
) -> None:
    """Each family's config.json without ``layer_types`` (older exports) reads as
    transformers builds it; with the list the class writes, it reads the same."""
    transformers = pytest.importorskip("transformers")
    shape = {"hidden_size": 256, "num_hidden_layers": 8, "num_attention_heads": 8,
             "num_key_value_heads": 4, "intermediate_size": 512, "vocab_size": 1000}  # fmt: skip
    cfg = {"model_type": model_type, **shape, **changes}
    hf = transformers.CONFIG_MAPPING[model_type](
        **{k: v for k, v in cfg.items() if k != "model_type"}
    )
    types = getattr(hf, "layer_types", None)
    if types is None:  # Mistral: the window applies to every layer
        sliding = [hf.sliding_window is not None] * hf.num_hidden_layers
    else:
        sliding = [kind == "sliding_attention" for kind in types]
    for written in (cfg, {**cfg, "layer_types": types} if types else cfg):
        spec = _read(written)
        assert spec.windowed_layers == sum(sliding)
        every = spec.full_attention_every
        if any(sliding):
            assert spec.sliding_window == hf.sliding_window
            assert sliding == [not every or bool((i + 1) % every) for i in range(len(sliding))]
        else:
            assert spec.sliding_window is None and every is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model_type": "qwen2", "use_sliding_window": True, "max_window_layers": 4},
         "full-attention layers [0, 1, 2, 3] do not repeat every k-th layer"),
        ({"layer_types": ["full_attention"] + ["sliding_attention"] * 31},
         "full-attention layers [0] do not repeat"),
        ({"layer_types": ["sliding_attention"] * 3}, "layer_types has 3 entries for 32 layers"),
    ],
)  # fmt: skip
def test_patterns_the_planner_cannot_hold_are_refused_by_name(
    changes: dict[str, Any], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(PlanInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _read({**MISTRAL, **changes})
    # On the command line: one line, exit 2.
    (tmp_path / "config.json").write_text(json.dumps({**MISTRAL, **changes}))
    from scalectl.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["plan", "estimate", "--model", str(tmp_path), "--gpu", "H100", "--gpus", "8"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err


def test_gemma_is_read_as_gated_with_its_own_defaults() -> None:
    """GemmaMLP is gate, up and down projections under GELU-tanh: its parameter count is
    transformers' own, counted on the meta device."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    cfg = {"model_type": "gemma", "hidden_size": 256, "intermediate_size": 768,
           "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1,
           "head_dim": 64, "vocab_size": 1000}  # fmt: skip
    spec = _read(cfg)
    assert spec.activation == "swiglu" and spec.tied_embeddings and spec.head_dim == 64
    hf = transformers.CONFIG_MAPPING["gemma"](**{k: v for k, v in cfg.items() if k != "model_type"})
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(hf)
    assert spec.num_params == sum(p.numel() for p in model.parameters())


def _estimate(cfg: dict[str, Any], seq: int, cp: int = 1) -> planner.Estimate:
    training = planner.TrainingSpec(seq_len=seq, global_batch_seqs=64, total_tokens=1e10)
    layout = planner.Layout(dp=8 // cp, cp=cp, sharding="zero3", recompute="full")
    cluster = planner.ClusterSpec(gpu="H100-SXM-80GB", num_gpus=8)
    return planner.estimate(_read(cfg), cluster, training, layout)


def test_a_window_shortens_long_steps_and_is_free_when_no_shorter_than_the_sequence() -> None:
    full = {**MISTRAL, "sliding_window": None}
    windowed, causal = _estimate(MISTRAL, 32768), _estimate(full, 32768)
    attention = windowed.step.breakdown["attention_s"] / causal.step.breakdown["attention_s"]
    # 4k of 32k keys: 7/8 of the pairs go; the tiles and the shorter kernel keep more.
    assert 0.15 < attention < 0.35
    assert windowed.step.time_s < causal.step.time_s

    # Fewer model FLOPs a step: the MFU basis counts the pairs the window keeps.
    def model_flops(est: planner.Estimate) -> float:
        return est.step.model_tflops_per_gpu * est.step.time_s

    assert model_flops(windowed) < 0.9 * model_flops(causal)
    assert _estimate(MISTRAL, 4096).step.time_s == pytest.approx(_estimate(full, 4096).step.time_s)


def test_context_parallelism_over_a_window_is_refused_and_never_searched() -> None:
    with pytest.raises(PlanInputError, match=r"layout: cp=2 with the sliding-window layers"):
        _estimate(MISTRAL, 32768, cp=2)
    _estimate(MISTRAL, 4096, cp=2)  # a window as long as the sequence: causal attention
    model, cluster = _read(MISTRAL), planner.ClusterSpec(gpu="H100-SXM-80GB", num_gpus=8)
    training = planner.TrainingSpec(seq_len=32768, global_batch_seqs=64, total_tokens=1e10)
    result = planner.search(model, cluster, training, top_k=50)
    assert result.ranked and {est.layout.cp for est in result.ranked} == {1}
    # The search's numpy path and the scalar estimate are one formula source.
    best = result.ranked[0]
    # The first estimates run uncompiled, later ones the compiled variant for this problem
    # (planner.estimator.COMPILE_AFTER_USES): all of them the search's figure.
    for _ in range(4):
        again = planner.estimate(model, cluster, training, best.layout)
        assert again.step.time_s == pytest.approx(best.step.time_s, rel=1e-9)
        assert again.memory_gib.total == pytest.approx(best.memory_gib.total, rel=1e-9)


def test_the_estimate_says_which_layers_are_windowed() -> None:
    gemma3 = _read({**MISTRAL, "model_type": "gemma3_text", "num_hidden_layers": 62,
                    "sliding_window": 1024})  # fmt: skip
    assert window_line(gemma3, 32768) == (
        "attention: a 1,024-token sliding window in 52 of 62 layers, every 6th full"
    )
    assert window_line(_read(MISTRAL), 4096).endswith("(no shorter than the sequence: full causal)")
    gpt_oss = planner.get_model("gpt-oss-120b")
    assert window_line(gpt_oss, 4096).endswith("in 18 of 36 layers, every 2nd full")


def test_megatron_gets_the_window_and_torchtitan_refuses_it() -> None:
    model = {"sliding_window": 128, "full_attention_every": 2}
    args = flag_values(framework_arguments(export_of(model=model), "megatron"))
    assert args["--window-size"] == "127,0" and args["--window-attn-skip-freq"] == "2"
    mistral = flag_values(
        framework_arguments(export_of(model={"sliding_window": 4096}), "megatron")
    )
    assert mistral["--window-size"] == "4095,0" and "--window-attn-skip-freq" not in mistral
    assert "--window-size" not in flag_values(framework_arguments(export_of(), "megatron"))
    with pytest.raises(ExportError, match=r"^plan model\.sliding_window 128: .*--to megatron"):
        framework_arguments(export_of(model=model), "torchtitan")


def test_the_trainer_refuses_a_window_it_would_not_run(tmp_path: Path) -> None:
    plan: dict[str, Any] = {
        "model": {"num_layers": 2, "hidden_size": 32, "num_attention_heads": 4,
                  "num_kv_heads": 2, "sliding_window": 8, "full_attention_every": 2},
        "training": {"seq_len": 16, "global_batch_seqs": 8},
        "layout": {"dp": 1, "micro_batch": 2},
    }  # fmt: skip
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    with pytest.raises(ConfigError) as info:
        parse_config(["--plan", str(path)])
    message = str(info.value)
    assert "plan model.sliding_window 8: the reference trainer attends" in message
    assert "\n" not in message
    plan["training"]["seq_len"] = 8  # the window covers the sequence: causal attention
    path.write_text(json.dumps(plan))
    assert parse_config(["--plan", str(path)]).seq_len == 8


GEMMA3_27B = {
    "model_type": "gemma3_text", "hidden_size": 5376, "intermediate_size": 21504,
    "num_attention_heads": 32, "num_hidden_layers": 62, "num_key_value_heads": 16,
    "head_dim": 128, "vocab_size": 262208, "sliding_window": 1024,
    "hidden_activation": "gelu_pytorch_tanh",
}  # fmt: skip
"""google/gemma-3-27b-pt's text_config (the keys the planner reads)."""


@pytest.mark.parametrize(
    ("preset", "config"), [("mistral-7b", MISTRAL), ("gemma3-27b", GEMMA3_27B)]
)
def test_windowed_presets_are_their_config_json(preset: str, config: dict[str, Any]) -> None:
    """A preset and its published config.json are one model, window included."""
    read = _read(config).model_dump(exclude={"name"})
    assert planner.get_model(preset).model_dump(exclude={"name"}) == read
    gpt_oss = planner.get_model("gpt-oss-120b")
    assert (gpt_oss.windowed_layers, gpt_oss.sliding_window) == (18, 128)


def test_the_gpt_oss_preset_is_transformers_default_config() -> None:
    """GptOssConfig's defaults are gpt-oss-120b's; read from config.json, they are the
    preset (biases on every projection and expert, the window on every other layer)."""
    transformers = pytest.importorskip("transformers")
    read = _read(transformers.GptOssConfig().to_dict()).model_dump(exclude={"name"})
    assert planner.get_model("gpt-oss-120b").model_dump(exclude={"name"}) == read
