"""A decoder-only transformer in plain torch: RMSNorm, rotary embeddings, GQA, SwiGLU
(or, for GPT-style plans, LayerNorm, GELU MLP and biases).

The blocks are the Llama layout (Touvron et al. 2023, "LLaMA", section 2.2):
pre-normalisation with RMSNorm (Zhang & Sennrich 2019, eq. 4), rotary position
embeddings on queries and keys (Su et al. 2021, "RoFormer", section 3.4.2), grouped-query
attention where ``kv_heads`` key/value heads are shared by ``heads / kv_heads`` query heads
each (Ainslie et al. 2023, "GQA", section 2), causal scaled dot-product attention
(``torch.nn.functional.scaled_dot_product_attention``), and a SwiGLU feed-forward
(Shazeer 2020, "GLU Variants Improve Transformer", eq. 6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from runtime.train.loss import chunked_cross_entropy
from runtime.train.moe import MoE


@dataclass(frozen=True)
class Llama3Rope:
    """Llama 3.1's rotary frequency rescaling (Meta's llama-models ``apply_scaling``;
    transformers' ``rope_type: llama3``): wavelengths longer than
    ``original_positions / low_freq_factor`` are stretched by ``factor``, those shorter
    than ``original_positions / high_freq_factor`` kept, and those between blended."""

    factor: float
    """Stretch of the low frequencies (8 in Llama 3.1)."""
    low_freq_factor: float
    """original_positions / this is the wavelength above which frequencies are divided by
    ``factor`` (1 in Llama 3.1)."""
    high_freq_factor: float
    """original_positions / this is the wavelength below which frequencies are kept
    (4 in Llama 3.1)."""
    original_positions: int
    """Context length of pre-training before the extension (8192 in Llama 3.1)."""


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the model; validated by ``runtime.train.config``."""

    layers: int
    """Number of transformer blocks."""
    hidden: int
    """Model width d_model."""
    heads: int
    """Query heads; ``hidden`` must be a multiple, with an even head size (rotary pairs)."""
    kv_heads: int
    """Key/value heads (GQA); divides ``heads``. Equal to ``heads`` is plain multi-head."""
    ffn_hidden: int
    """Inner width of the SwiGLU feed-forward."""
    vocab: int
    """Embedding rows; at least 257 for byte tokens plus the end-of-document token."""
    seq_len: int
    """Longest sequence the rotary tables cover."""
    tied: bool
    """Whether the output projection shares the input embedding's weight."""
    activation: str = "swiglu"
    """Feed-forward: ``swiglu`` (Llama) or ``gelu`` (GPT-2/3, a 2-matrix MLP)."""
    norm: str = "rmsnorm"
    """``rmsnorm`` (Llama) or ``layernorm`` (GPT)."""
    bias: bool = False
    """Biases in the attention and MLP projections and the norms (GPT: yes, Llama: no)."""
    head_dim_override: int = 0
    """Size of one attention head; 0: hidden / heads."""
    rope_theta: float = 10_000.0
    """Rotary base (RoFormer section 3.4.2 uses 10000)."""
    norm_eps: float = 1e-5
    """RMSNorm epsilon."""
    experts: int = 1
    """Routed experts per MoE layer (``runtime.train.moe``); 1: a dense model."""
    top_k: int = 1
    """Experts each token is routed to."""
    moe_ffn_hidden: int = 0
    """Inner width of one routed expert; 0: ``ffn_hidden``."""
    shared_ffn_hidden: int = 0
    """Inner width of the shared experts together (DeepSeekMoE); 0: none."""
    dense_first_layers: int = 0
    """Leading blocks with a dense feed-forward instead of experts (DeepSeek-V3)."""
    router_score: str = "softmax"
    """Router score function: softmax or sigmoid."""
    capacity_factor: float = 0.0
    """Expert capacity as a multiple of an even share of a group's assignments; 0: dropless."""
    aux_loss_coef: float = 0.01
    """Weight alpha of the load-balancing loss (Fedus et al. 2021, Sec. 2.2: 1e-2)."""
    qkv_bias: bool = False
    """Biases on the query, key and value projections alone (Qwen2); ``bias`` puts them
    everywhere."""
    attn_out_bias: bool = False
    """A bias on the attention output projection (a Llama checkpoint with
    ``attention_bias: true`` has one on q, k, v and o)."""
    rope_llama3: Llama3Rope | None = None
    """Llama 3.1's rescaling of the rotary frequencies; None: the plain RoFormer ones."""

    @property
    def head_dim(self) -> int:
        return self.head_dim_override or self.hidden // self.heads


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * g  (Zhang & Sennrich 2019, eq. 4)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


def rotary_tables(
    seq_len: int, head_dim: int, theta: float, llama3: Llama3Rope | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of angle position * theta^(-2i/d) for each pair i (RoFormer eq. 15), [T, d/2];
    with ``llama3`` the frequencies rescaled first (``llama3_frequencies``)."""
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    if llama3 is not None:
        inv_freq = llama3_frequencies(inv_freq, llama3)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float64), inv_freq)
    return angles.cos().float(), angles.sin().float()


def llama3_frequencies(inv_freq: torch.Tensor, scaling: Llama3Rope) -> torch.Tensor:
    """Llama 3.1's rotary frequencies: 2 pi / inv_freq is a pair's wavelength; long ones
    are divided by ``factor``, short ones kept, and between the two thresholds the
    frequency is blended, (1 - s) f / factor + s f with
    s = (original_positions / wavelength - low) / (high - low)."""
    low_wavelen = scaling.original_positions / scaling.low_freq_factor
    high_wavelen = scaling.original_positions / scaling.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    smooth = (scaling.original_positions / wavelen - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor
    )
    blended = (1 - smooth) * inv_freq / scaling.factor + smooth * inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / scaling.factor, blended)
    return torch.where(wavelen < high_wavelen, inv_freq, scaled)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each (even, odd) pair of ``x`` [B, H, T, D] by its position's angle."""
    even, odd = x[..., 0::2].float(), x[..., 1::2].float()
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return rotated.flatten(-2).type_as(x)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = cfg.heads, cfg.kv_heads, cfg.head_dim
        qkv_bias, out_bias = cfg.bias or cfg.qkv_bias, cfg.bias or cfg.attn_out_bias
        self.wq = nn.Linear(cfg.hidden, cfg.heads * cfg.head_dim, bias=qkv_bias)
        self.wk = nn.Linear(cfg.hidden, cfg.kv_heads * cfg.head_dim, bias=qkv_bias)
        self.wv = nn.Linear(cfg.hidden, cfg.kv_heads * cfg.head_dim, bias=qkv_bias)
        self.wo = nn.Linear(cfg.heads * cfg.head_dim, cfg.hidden, bias=out_bias)
        self.core = AttentionCore()

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        batch, seq, _ = x.shape
        # -1 heads: under tensor parallelism each rank holds heads / tp of them.
        q = self.wq(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(batch, seq, -1, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        out = self.core(q, k, v)
        return self.wo(out.transpose(1, 2).reshape(batch, seq, -1))


class AttentionCore(nn.Module):
    """softmax(q k^T / sqrt(d)) v, causal: the part selective recomputation recomputes
    (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
    Models", section 4.2); no parameters, so wrapping it changes no checkpoint key."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if k.shape[1] != q.shape[1]:
            # Each group of heads/kv_heads query heads reads the same key/value head (GQA).
            repeat = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)


class SwiGLU(nn.Module):
    """FFN(x) = W2 (SiLU(W1 x) * W3 x)  (Shazeer 2020, eq. 6)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.w1 = nn.Linear(cfg.hidden, cfg.ffn_hidden, bias=False)
        self.w3 = nn.Linear(cfg.hidden, cfg.ffn_hidden, bias=False)
        self.w2 = nn.Linear(cfg.ffn_hidden, cfg.hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class GeluMLP(nn.Module):
    """FFN(x) = W2 GELU(W1 x + b1) + b2 (Radford et al. 2019, GPT-2; GELU with the tanh
    approximation of Hendrycks & Gimpel 2016, eq. 2, as GPT-2's code computes it)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.w1 = nn.Linear(cfg.hidden, cfg.ffn_hidden, bias=cfg.bias)
        self.w2 = nn.Linear(cfg.ffn_hidden, cfg.hidden, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.gelu(self.w1(x), approximate="tanh"))


def make_norm(cfg: ModelConfig) -> nn.Module:
    """RMSNorm (Llama), or LayerNorm (Ba et al. 2016, eq. 4; GPT) with a bias when
    ``cfg.bias``."""
    if cfg.norm == "layernorm":
        return nn.LayerNorm(cfg.hidden, eps=cfg.norm_eps, bias=cfg.bias)
    return RMSNorm(cfg.hidden, cfg.norm_eps)


def make_ffn(cfg: ModelConfig, index: int) -> nn.Module:
    """Block ``index``'s feed-forward: experts in an MoE model from block
    ``dense_first_layers`` on, else the dense MLP."""
    if cfg.experts > 1 and index >= cfg.dense_first_layers:
        return MoE(
            cfg.hidden,
            experts=cfg.experts,
            top_k=cfg.top_k,
            width=cfg.moe_ffn_hidden or cfg.ffn_hidden,
            shared_width=cfg.shared_ffn_hidden,
            score=cfg.router_score,
            capacity_factor=cfg.capacity_factor,
            aux_loss_coef=cfg.aux_loss_coef,
        )
    return GeluMLP(cfg) if cfg.activation == "gelu" else SwiGLU(cfg)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, index: int = 0) -> None:
        super().__init__()
        self.attn_norm = make_norm(cfg)
        self.attn = Attention(cfg)
        self.ffn_norm = make_norm(cfg)
        self.ffn: nn.Module = make_ffn(cfg, index)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin)
        return x + self.ffn(self.ffn_norm(x))


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab, cfg.hidden)
        self.layers = nn.ModuleList(Block(cfg, index) for index in range(cfg.layers))
        self.norm = make_norm(cfg)
        self.output = nn.Linear(cfg.hidden, cfg.vocab, bias=False)
        if cfg.tied:
            self.output.weight = self.embed.weight
        cos, sin = rotary_tables(cfg.seq_len, cfg.head_dim, cfg.rope_theta, cfg.rope_llama3)
        # Not persistent: recomputed from the config, so checkpoints hold only parameters.
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.positions: torch.Tensor | None = None
        """Global positions of the tokens this rank holds, when context parallelism splits
        the sequence (``runtime.train.context``); None: positions 0 .. T-1."""
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """N(0, 0.02) weights; residual output projections scaled by 1/sqrt(2 * layers).

        The scaled residual init is GPT-2's (Radford et al. 2019, section 2.3).
        """
        std = 0.02
        for name, param in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(param)  # GPT-2 starts its biases at 0
            if param.dim() < 2:
                continue  # norm gains stay at 1
            scale = (
                1 / math.sqrt(2 * self.cfg.layers)
                if name.endswith(("wo.weight", "w2.weight"))
                else 1.0
            )
            nn.init.normal_(param, mean=0.0, std=std * scale)

    def forward(
        self,
        tokens: torch.Tensor,
        targets: torch.Tensor | None = None,
        loss_chunks: int = 1,
        reduction: str = "mean",
    ) -> torch.Tensor:
        """Logits [B, T, vocab] for token ids [B, T]; with ``targets`` [B, T] instead the
        cross-entropy over ``loss_chunks`` sequence chunks (``runtime.train.loss``), so
        the whole micro-batch's logits need never exist at once. The loss is computed
        here, inside the root module's forward, because FSDP gathers the output
        projection's weight around this call."""
        seq = tokens.shape[1]
        rope_cos: torch.Tensor = self.rope_cos  # type: ignore[assignment]
        rope_sin: torch.Tensor = self.rope_sin  # type: ignore[assignment]
        if self.positions is None:
            cos, sin = rope_cos[:seq], rope_sin[:seq]
        else:  # context parallelism: this rank's load-balanced chunks of the sequence
            cos, sin = rope_cos[self.positions], rope_sin[self.positions]
        x = self.embed(tokens)
        for block in self.layers:
            x = block(x, cos, sin)
        hidden = self.norm(x)
        if targets is None:
            return self.output(hidden)
        return chunked_cross_entropy(self.output, hidden, targets, loss_chunks, reduction)


def count_parameters(model: nn.Module) -> int:
    """Unique parameters (a tied weight counts once), full size even when sharded."""
    return sum(p.numel() for p in model.parameters())
