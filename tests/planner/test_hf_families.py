"""Every config.json family the planner reads (planner.hf_families.READ) reads to the model
transformers builds from it: the parameter count of the ModelSpec against transformers'
own model on the meta device, for the class's full config (what ``save_pretrained``
writes) and for one that gives only the shape keys (the rest: the planner's per-family
defaults against the class's). Every other family is refused by name, exit 2, and a YAML
file of ModelSpec fields plans any model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from planner.errors import PlanInputError
from planner.hf_config import model_from_hf_dict
from planner.hf_families import GPT2_KEYS, READ, WHY_NOT
from planner.request import resolve_model

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

SHAPE = {"num_hidden_layers": 4, "hidden_size": 256, "intermediate_size": 512,
         "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64, "vocab_size": 1000,
         "moe_intermediate_size": 128, "num_local_experts": 4, "num_experts": 4,
         "n_routed_experts": 4, "num_experts_per_tok": 2, "first_k_dense_replace": 1,
         "pad_token_id": 0}  # fmt: skip
"""A small model of each family: only the keys its class has are passed."""
GPT2_SHAPE = {"n_layer": 4, "n_embd": 256, "n_head": 4, "vocab_size": 1000}
TOLERANCE = 0.02
"""Norm weights and biases the planner does not carry (Qwen2's q/k/v biases, Gemma 2's
four norms a layer, GPT-OSS's attention sinks) stay within it."""


def _transformers_model(model_type: str) -> tuple[Any, int]:
    """(the class's config for the small shape, the parameter count of its model)."""
    cls = transformers.CONFIG_MAPPING[model_type]
    reference = cls()
    shape = GPT2_SHAPE if model_type in GPT2_KEYS else SHAPE
    # DeepSeek's multi-head latent attention is read as multi-head attention: close at the
    # published shape (the class's default: 0.4 % above DeepSeek-V3's 671B), not at any
    # shape, so these families are checked at theirs (on the meta device, no memory).
    latent = hasattr(reference, "kv_lora_rank")
    config = (
        reference if latent else cls(**{k: v for k, v in shape.items() if hasattr(reference, k)})
    )
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    return config, sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("model_type", sorted(READ))
def test_each_family_reads_to_transformers_own_parameter_count(model_type: str) -> None:
    config, count = _transformers_model(model_type)
    full = config.to_dict()
    spec = model_from_hf_dict(full, model_type, Path("config.json"))
    assert spec.num_params == pytest.approx(count, rel=TOLERANCE), model_type
    # The same model from only the keys that differ from the class's defaults, as a
    # config.json written with use_diff (the planner's defaults must be the class's).
    defaults = config.__class__().to_dict()
    diff = {k: v for k, v in full.items() if defaults.get(k) != v or k == "model_type"}
    shape_keys = GPT2_SHAPE if model_type in GPT2_KEYS else SHAPE
    diff.update({k: full[k] for k in shape_keys if k in full})
    assert model_from_hf_dict(diff, model_type, Path("config.json")).num_params == (
        pytest.approx(count, rel=TOLERANCE)
    ), model_type


@pytest.mark.parametrize("model_type", sorted(WHY_NOT))
def test_other_families_are_refused_by_name(model_type: str) -> None:
    assert model_type in transformers.CONFIG_MAPPING  # a real family, spelled as transformers does
    with pytest.raises(PlanInputError) as info:
        model_from_hf_dict({"model_type": model_type, **SHAPE}, "m", Path("c.json"))
    message = str(info.value)
    assert f"model_type {model_type!r} is not a family the planner reads" in message
    assert WHY_NOT[model_type] in message and "--model FILE.yaml" in message


def test_an_unchecked_family_is_refused_and_one_without_a_type_reads_as_llama() -> None:
    with pytest.raises(PlanInputError, match="not yet checked against transformers"):
        model_from_hf_dict({"model_type": "doge", **SHAPE}, "m", Path("c.json"))
    untyped = {k: SHAPE[k] for k in ("num_hidden_layers", "hidden_size", "intermediate_size",
                                     "num_attention_heads", "vocab_size")}  # fmt: skip
    assert model_from_hf_dict(untyped, "m", Path("c.json")).activation == "swiglu"


@pytest.mark.parametrize(("dense", "first"), [([0, 1], 2), ([], 0), ([1, 3], None)])
def test_qwen_moe_dense_layers_read_when_they_lead(dense: list[int], first: int | None) -> None:
    """Qwen-MoE's mlp_only_layers against the model transformers builds from them."""
    shape = {k: v for k, v in SHAPE.items() if k != "first_k_dense_replace"}  # DeepSeek's key
    cfg = {"model_type": "qwen2_moe", **shape, "mlp_only_layers": dense}
    if first is None:
        with pytest.raises(PlanInputError, match=r"mlp_only_layers \[1, 3\]: dense layers"):
            model_from_hf_dict(cfg, "m", Path("c.json"))
        return
    spec = model_from_hf_dict(cfg, "m", Path("c.json"))
    assert spec.dense_first_layers == first
    hf = transformers.CONFIG_MAPPING["qwen2_moe"](
        **{
            k: v
            for k, v in cfg.items()
            if k != "model_type" and hasattr(transformers.CONFIG_MAPPING["qwen2_moe"](), k)
        }
    )
    with torch.device("meta"):
        count = sum(
            p.numel() for p in transformers.AutoModelForCausalLM.from_config(hf).parameters()
        )
    assert spec.num_params == pytest.approx(count, rel=TOLERANCE)


def test_a_multimodal_wrapper_points_at_its_language_model() -> None:
    wrapper = {"model_type": "gemma3", "text_config": {"model_type": "gemma3_text", **SHAPE}}
    with pytest.raises(PlanInputError, match=r"wraps a gemma3_text language model \(text_config\)"):
        model_from_hf_dict(wrapper, "m", Path("c.json"))
    model_from_hf_dict(wrapper["text_config"], "m", Path("c.json"))  # the fix it names works


def test_a_yaml_model_spec_plans_any_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from scalectl.cli import main

    path = tmp_path / "hybrid.yaml"
    path.write_text(
        "num_layers: 8\nhidden_size: 1024\nnum_attention_heads: 8\nnum_kv_heads: 2\n"
        "ffn_hidden_size: 4096\nvocab_size: 32000\n",
        encoding="utf-8",
    )
    spec = resolve_model(str(path))
    assert (spec.name, spec.num_layers, spec.num_kv_heads) == ("hybrid", 8, 2)
    out = tmp_path / "plan.json"
    with pytest.raises(SystemExit) as exc:
        main(["plan", "estimate", "--model", str(path), "--gpu", "H100", "--gpus", "8",
              "--seq-len", "4096", "--global-batch", "64", "--tokens", "1e9",
              "--out", str(out)])  # fmt: skip
    assert exc.value.code in (0, None)
    assert json.loads(out.read_text())["model"]["name"] == "hybrid"
    capsys.readouterr()
    # A field ModelSpec does not have: one line naming it, exit 2.
    path.write_text("num_layers: 8\nhidden: 1024\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        main(["plan", "estimate", "--model", str(path), "--gpu", "H100", "--gpus", "8",
              "--seq-len", "4096", "--global-batch", "64", "--tokens", "1e9"])  # fmt: skip
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --model {path}: hidden_size: ")
