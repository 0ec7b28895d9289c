"""The model a plan is for: a decoder-only transformer, dense or mixture-of-experts.

A frozen pydantic model that refuses unknown keys (see :mod:`planner.specs`, which
re-exports it); its parameter counts come from :mod:`planner.formulas.params`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from planner.errors import PlanInputError
from planner.formulas import params

Activation = Literal["swiglu", "gelu"]

_FROZEN = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(BaseModel):
    """A decoder-only transformer, dense or mixture-of-experts."""

    model_config = _FROZEN

    name: str = Field(min_length=1)
    """Label shown in outputs (a preset name, or the config.json's folder)."""
    num_layers: int = Field(gt=0)
    """Transformer blocks (L)."""
    hidden_size: int = Field(gt=0)
    """Residual-stream width (h, d_model)."""
    num_attention_heads: int = Field(gt=0)
    """Query heads (a)."""
    num_kv_heads: int = Field(gt=0)
    """Key/value heads: equal to num_attention_heads for MHA, fewer for GQA, 1 for MQA."""
    head_dim: int | None = Field(default=None, gt=0)
    """Per-head width; None means hidden_size / num_attention_heads."""
    ffn_hidden_size: int = Field(gt=0)
    """Inner width of the dense MLP (4h for GPT, 8/3·h rounded for Llama)."""
    activation: Activation = "swiglu"
    """'swiglu': three matrices (gate, up, down); 'gelu': two (up, down)."""
    vocab_size: int = Field(gt=0)
    """Vocabulary size (padded, as trained)."""
    tied_embeddings: bool = False
    """Output layer shares the input embedding matrix."""
    num_experts: int = Field(default=1, gt=0)
    """Routed experts per MoE layer; 1 means a dense model."""
    top_k: int = Field(default=1, gt=0)
    """Experts each token is routed to (MoE only)."""
    moe_ffn_hidden_size: int | None = Field(default=None, gt=0)
    """Inner width of one routed expert; None means ffn_hidden_size."""
    shared_expert_ffn_hidden_size: int = Field(default=0, ge=0)
    """Inner width of the always-active shared experts together (Qwen-MoE's
    shared_expert_intermediate_size; DeepSeek-MoE's n_shared_experts x
    moe_intermediate_size); 0 for none."""
    dense_first_layers: int = Field(default=0, ge=0)
    """MoE only: leading layers whose MLP is a dense one of ffn_hidden_size instead of
    experts (DeepSeek-V3: 3, config.json first_k_dense_replace; DeepSeek-V3 report, Sec.
    4.2)."""
    router_score: Literal["softmax", "sigmoid"] = "softmax"
    """MoE only: the router's score function: softmax (Switch, Mixtral, DeepSeekMoE) or
    sigmoid (DeepSeek-V3 report, Sec. 2.1.2; config.json scoring_func). The reference
    trainer applies it; the cost model does not depend on it."""
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    """Normalisation: RMSNorm (weight only) or LayerNorm (weight and bias)."""
    bias: bool = False
    """Linear layers carry biases (GPT-2/Megatron GPT do, Llama does not)."""
    position_embedding: Literal["rope", "learned", "alibi"] = "rope"
    """Rotary (no parameters), a learned table of max_position_embeddings rows, or ALiBi
    (Press et al. 2022: a per-head linear bias added to the attention scores inside the
    attention kernel; no parameters and no rotary pass over q and k, e.g. MPT, BLOOM)."""
    max_position_embeddings: int | None = Field(default=None, gt=0)
    """Rows of the learned position table (required when position_embedding is 'learned')."""
    hidden_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Dropout after attention and MLP; > 0 stores a byte mask per element (Korthikanti 2022)."""
    attention_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Dropout on attention probabilities; > 0 stores an s x s byte mask with unfused attention."""
    sliding_window: int | None = Field(default=None, gt=0)
    """Keys a query of a windowed layer attends to: itself and the w - 1 tokens before it
    (Beltagy et al. 2020, Longformer, Sec. 3.1; Jiang et al. 2023, Mistral 7B, Sec. 2;
    config.json ``sliding_window``, Megatron-LM ``--window-size w-1,0``); None: every layer
    attends causally to the whole sequence."""
    full_attention_every: int | None = Field(default=None, ge=2)
    """With sliding_window: every k-th layer (0-based layers k-1, 2k-1, ...) attends to the
    whole sequence and the others to the window (Gemma 2 and gpt-oss: 2, Cohere2: 4, Gemma
    3: 6; transformers' ``layer_types``, Megatron-LM ``--window-attn-skip-freq k``); None:
    every layer is windowed (Mistral 7B v0.1)."""

    @model_validator(mode="before")
    @classmethod
    def _default_kv_heads(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("num_kv_heads") is None:
            data = {**data, "num_kv_heads": data.get("num_attention_heads")}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.head_dim is None and self.hidden_size % self.num_attention_heads:
            raise PlanInputError(
                f"model {self.name}: hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}; set head_dim explicitly."
            )
        if self.num_attention_heads % self.num_kv_heads:
            raise PlanInputError(
                f"model {self.name}: num_kv_heads {self.num_kv_heads} must divide "
                f"num_attention_heads {self.num_attention_heads} (GQA groups)."
            )
        if self.top_k > self.num_experts:
            raise PlanInputError(
                f"model {self.name}: top_k {self.top_k} exceeds num_experts {self.num_experts}."
            )
        if self.dense_first_layers and (
            self.num_experts == 1 or self.dense_first_layers >= self.num_layers
        ):
            raise PlanInputError(
                f"model {self.name}: dense_first_layers {self.dense_first_layers} needs an "
                f"MoE model (num_experts > 1) and fewer than num_layers {self.num_layers}."
            )
        if self.full_attention_every is not None and self.sliding_window is None:
            raise PlanInputError(
                f"model {self.name}: full_attention_every {self.full_attention_every} needs "
                "sliding_window (the window of the other layers); set it or drop the key."
            )
        if self.position_embedding == "learned" and self.max_position_embeddings is None:
            raise PlanInputError(
                f"model {self.name}: learned position embeddings need max_position_embeddings."
            )
        return self

    @property
    def head_dim_eff(self) -> int:
        """Per-head width actually used."""
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def is_moe(self) -> bool:
        """True for a mixture-of-experts model."""
        return self.num_experts > 1

    @property
    def windowed_layers(self) -> int:
        """Layers that attend to the sliding window (0 without one)."""
        if self.sliding_window is None:
            return 0
        every = self.full_attention_every
        return self.num_layers - (self.num_layers // every if every else 0)

    def windows_at(self, seq_len: int) -> bool:
        """True when some layer's window is shorter than ``seq_len`` (a window no shorter
        than the sequence is full causal attention)."""
        return self.windowed_layers > 0 and (self.sliding_window or 0) < seq_len

    @property
    def num_params(self) -> float:
        """Total parameters, embeddings included (every expert counted)."""
        return float(params.total_params(*model_shape_args(self)))

    @property
    def num_active_params(self) -> float:
        """Parameters a token passes through (top_k experts, not all), embeddings included."""
        return float(params.active_params(*model_shape_args(self)))


def model_shape_args(m: ModelSpec) -> tuple[float, ...]:
    """The numeric shape of ``m`` in the argument order of the functions below."""
    return (
        float(m.num_layers),
        float(m.hidden_size),
        float(m.num_attention_heads),
        float(m.num_kv_heads),
        float(m.head_dim_eff),
        float(m.ffn_hidden_size),
        1.0 if m.activation == "swiglu" else 0.0,
        float(m.vocab_size),
        1.0 if m.tied_embeddings else 0.0,
        float(m.num_experts),
        float(m.top_k),
        float(m.moe_ffn_hidden_size or m.ffn_hidden_size),
        float(m.shared_expert_ffn_hidden_size),
        1.0 if m.norm == "layernorm" else 0.0,
        1.0 if m.bias else 0.0,
        float(m.max_position_embeddings or 0) if m.position_embedding == "learned" else 0.0,
        float(m.dense_first_layers),
    )
