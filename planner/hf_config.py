"""Read a Hugging Face ``config.json`` into a :class:`~planner.specs.ModelSpec`.

These key families are understood:

* Llama-style (llama, mistral, mixtral, qwen2, qwen2_moe and look-alikes):
  ``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``,
  ``num_key_value_heads`` (default: MHA), ``intermediate_size``, ``vocab_size``,
  ``tie_word_embeddings`` (default false), ``head_dim`` (optional); MoE:
  ``num_local_experts``/``num_experts``, ``num_experts_per_tok``,
  ``moe_intermediate_size``, ``shared_expert_intermediate_size``; DeepSeek-MoE's names
  (deepseek_v2/v3, glm4_moe): ``n_routed_experts``, ``n_shared_experts`` (shared experts
  of ``moe_intermediate_size`` each), ``first_k_dense_replace`` (dense leading layers, as
  Qwen-MoE's ``mlp_only_layers`` when they lead), ``scoring_func`` (sigmoid router
  scores); MoE layers only every ``moe_layer_freq``-th/``decoder_sparse_step``-th layer
  are not modelled and are refused.
* GPT-2-style: ``n_embd``, ``n_layer``, ``n_head``, ``n_inner`` (default 4·n_embd, as
  transformers' GPT2Config), ``vocab_size``, ``n_positions`` (default 1024); GELU, biases,
  LayerNorm, learned positions, tied embeddings, dropout from ``resid_pdrop``/``attn_pdrop``;
  GPT-BigCode's ``multi_query`` (one key/value head).
* GPT-NeoX (``model_type`` gpt_neox): the Llama-style keys, with LayerNorm, biases and
  ``hidden_dropout``.
* Gemma (gemma, gemma2, gemma3_text, vaultgemma): the Llama-style keys; the MLP is gated
  whatever its activation (GemmaMLP: gate, up and down projections under GELU-tanh,
  GeGLU), read from ``hidden_activation`` where ``hidden_act`` is absent.

Only the families in :data:`planner.hf_families.READ` are read (each checked against the
model transformers builds); any other ``model_type`` is refused by name. Sliding-window
attention (``sliding_window``, ``layer_types`` and each family's pattern) is read by
:mod:`planner.hf_window`.

A key the planner reads that is missing takes its ``model_type``'s default in transformers
(:mod:`planner.hf_defaults`: GPT-2's dropout is 0.1, Mistral's kv heads 8, ...).
A required key that is missing raises :class:`~planner.errors.PlanInputError` naming it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from planner.errors import PlanInputError
from planner.hf_defaults import with_defaults
from planner.hf_families import GPT2_KEYS, check_family
from planner.hf_window import sliding_window_of
from planner.specs import ModelSpec

_GATED_ACTIVATIONS = {"silu", "swish", "swiglu"}
_GATED_TYPES = {"gemma", "gemma2", "gemma3_text", "vaultgemma"}
"""Families whose MLP is gated under any activation (transformers' GemmaMLP)."""
_BIASED_TYPES = {"gpt_neox", "gpt_oss"}
"""Families whose ``attention_bias`` means biases on every projection (gpt-oss's experts
too); elsewhere it covers q/k/v only, which the planner leaves out (as Qwen2's)."""


def _need(cfg: dict[str, Any], key: str, path: Path, what: str) -> Any:
    if key not in cfg or cfg[key] is None:
        raise PlanInputError(
            f"{path}: missing key {key!r} ({what}); add it to the config.json or use a preset."
        )
    return cfg[key]


def model_from_hf_dict(cfg: dict[str, Any], name: str, path: Path) -> ModelSpec:
    """Build a ModelSpec from an already-parsed config.json mapping."""
    model_type = check_family(cfg, path)
    gpt2_keys = "n_embd" in cfg or model_type in GPT2_KEYS
    cfg = with_defaults(cfg, gpt2_keys)
    if gpt2_keys:
        hidden = _need(cfg, "n_embd", path, "hidden size")
        return ModelSpec(
            name=name,
            num_layers=_need(cfg, "n_layer", path, "number of layers"),
            hidden_size=hidden,
            num_attention_heads=_need(cfg, "n_head", path, "attention heads"),
            # GPT-BigCode's multi_query: one key/value head shared by all query heads
            num_kv_heads=1 if cfg.get("multi_query") else cfg["n_head"],
            ffn_hidden_size=cfg.get("n_inner") or 4 * hidden,
            activation="gelu",
            vocab_size=_need(cfg, "vocab_size", path, "vocabulary size"),
            tied_embeddings=bool(cfg["tie_word_embeddings"]),
            norm="layernorm",
            bias=True,
            position_embedding="learned",
            max_position_embeddings=cfg["n_positions"],
            hidden_dropout=float(cfg["resid_pdrop"] or 0.0),
            attention_dropout=float(cfg["attn_pdrop"] or 0.0),
        )
    heads = _need(cfg, "num_attention_heads", path, "attention heads")
    experts = (
        cfg.get("num_local_experts") or cfg.get("num_experts") or cfg.get("n_routed_experts") or 1
    )
    act = str(cfg.get("hidden_act") or cfg.get("hidden_activation") or "silu").lower()
    gated = act in _GATED_ACTIVATIONS or model_type in _GATED_TYPES
    layers = _need(cfg, "num_hidden_layers", path, "number of layers")
    window, full_every = sliding_window_of(cfg, int(layers), path)
    neox = model_type == "gpt_neox"
    moe_ffn = cfg.get("moe_intermediate_size")
    shared = cfg.get("shared_expert_intermediate_size") or (
        int(cfg.get("n_shared_experts") or 0) * int(moe_ffn or 0)
    )
    for key in ("moe_layer_freq", "decoder_sparse_step"):
        if experts > 1 and int(cfg.get(key) or 1) != 1:
            raise PlanInputError(
                f"{path}: {key} {cfg[key]} (MoE only every few layers) is not modelled; "
                "the planner takes MoE in every layer after first_k_dense_replace."
            )
    return ModelSpec(
        name=name,
        num_layers=layers,
        hidden_size=_need(cfg, "hidden_size", path, "hidden size"),
        num_attention_heads=heads,
        num_kv_heads=cfg.get("num_key_value_heads") or heads,
        head_dim=cfg.get("head_dim"),
        ffn_hidden_size=_need(cfg, "intermediate_size", path, "MLP width"),
        activation="swiglu" if gated else "gelu",
        vocab_size=_need(cfg, "vocab_size", path, "vocabulary size"),
        tied_embeddings=bool(cfg["tie_word_embeddings"]),
        num_experts=int(experts),
        top_k=int(cfg.get("num_experts_per_tok") or 1) if experts > 1 else 1,
        moe_ffn_hidden_size=moe_ffn if experts > 1 else None,
        shared_expert_ffn_hidden_size=int(shared) if experts > 1 else 0,
        dense_first_layers=_dense_first_layers(cfg, experts, path),
        router_score="sigmoid" if cfg.get("scoring_func") == "sigmoid" else "softmax",
        norm="layernorm" if neox else "rmsnorm",
        bias=bool(model_type in _BIASED_TYPES and cfg.get("attention_bias")),
        hidden_dropout=float(cfg.get("hidden_dropout") or 0.0),
        attention_dropout=float(cfg.get("attention_dropout") or 0.0),
        sliding_window=window,
        full_attention_every=full_every,
    )


def _dense_first_layers(cfg: dict[str, Any], experts: int, path: Path) -> int:
    """Leading layers with a dense MLP: DeepSeek's ``first_k_dense_replace``, or Qwen-MoE's
    ``mlp_only_layers`` when those are the first k (any other placement is refused)."""
    if experts <= 1:
        return 0
    dense = sorted(int(i) for i in cfg.get("mlp_only_layers") or [])
    if dense and dense != list(range(len(dense))):
        raise PlanInputError(
            f"{path}: mlp_only_layers {dense[:8]}{' ...' if len(dense) > 8 else ''}: dense "
            "layers other than the first k are not modelled (ModelSpec dense_first_layers)."
        )
    return len(dense) or int(cfg.get("first_k_dense_replace") or 0)


def load_hf_config(path: str | Path) -> ModelSpec:
    """A ModelSpec from a config.json file (or a directory containing one)."""
    file = Path(path)
    if file.is_dir():
        file = file / "config.json"
    if not file.is_file():
        raise PlanInputError(f"--model: no config.json at {str(path)!r}.")
    try:
        cfg = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PlanInputError(f"{file}: not valid JSON ({exc}).") from exc
    if not isinstance(cfg, dict):
        raise PlanInputError(f"{file}: expected a JSON object of model settings.")
    return model_from_hf_dict(cfg, config_model_name(cfg, file), file)


def config_model_name(cfg: dict[str, Any], file: Path) -> str:
    """The model's name: the last part of the config's own ``_name_or_path`` (what
    ``save_pretrained`` records), else the name of the directory holding config.json,
    resolved first, so ``config.json``, ``./config.json`` and its absolute path give one
    name."""
    given = cfg.get("_name_or_path")
    if isinstance(given, str) and given.strip("/ "):
        return given.rstrip("/").rsplit("/", 1)[-1]
    return file.resolve().parent.name or file.stem
