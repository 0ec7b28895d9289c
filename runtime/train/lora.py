"""LoRA and QLoRA adapters on the reference model (``runtime.train.model.Transformer``).

LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", Sec. 4.1)
freezes a pre-trained weight W0 [out, in] and trains a low-rank update ΔW = B·A, with
A [r, in] and B [out, r]; the layer computes h = W0·x + (alpha / r)·B·A·x. B starts at
zero, so the adapted model starts as the pre-trained one (Sec. 4.1: "zero for B"); A is
Kaiming-uniform as PEFT initialises it (``nn.init.kaiming_uniform_(a=sqrt(5))``, the
default of ``nn.Linear``). The adapters sit on the blocks' projections named as the
planner names them (planner/finetune.py): q, k, v, o, gate, up, down.

QLoRA (Dettmers et al. 2023, Sec. 3) also stores the frozen weights of the blocks' linear
layers in 4-bit NormalFloat, blocks of 64 weights with one absmax each, the absmaxes
quantised again to 8 bits in blocks of 256 (double quantisation), and dequantises a
layer's weight for its GEMM: torchao's ``NF4Tensor`` (``runtime.train.lora_nf4``).

No dropout on the adapter's input: torchtune's LoRA builders default ``lora_dropout`` to
0.0; QLoRA (Appendix B.2) used 0.1 for 7B/13B models and 0.05 for 33B/65B, a
regulariser for long runs on small data sets, not part of the method. Without it the
adapted layer is deterministic, so every layout's losses can be compared with one
process's (tests/runtime/test_lora_layouts.py) and the planner, which counts no dropout
mask among LoRA's activations, stays right.

Under tensor parallelism the adapters are split as their base weight is
(``runtime.train.lora_tp``); FSDP2 shards them with the rest of their block.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions

from contract.finetune_targets import TARGET_GROUPS, TargetsError
from contract.finetune_targets import resolve_targets as contract_targets
from runtime.train import lora_nf4
from runtime.train.lora_nf4 import LoRAError, quantize_base_nf4
from runtime.train.model import ModelConfig

__all__ = [
    "TARGET_GROUPS",
    "LoRAError",
    "LoRALinear",
    "adapter_state_dict",
    "apply_lora",
    "check_base_format",
    "merged_state_dict",
    "quantize_base_nf4",
    "resolve_targets",
    "trainable_parameters",
    "trainable_state_dict_options",
]

SWIGLU_MODULES = {
    "q": "attn.wq",
    "k": "attn.wk",
    "v": "attn.wv",
    "o": "attn.wo",
    "gate": "ffn.w1",
    "up": "ffn.w3",
    "down": "ffn.w2",
}
"""Planner target → module of a SwiGLU block: FFN = W2 (SiLU(W1 x) * W3 x), W1 the gate."""
GELU_MODULES = {"q": "attn.wq", "k": "attn.wk", "v": "attn.wv", "o": "attn.wo"} | {
    "up": "ffn.w1",
    "down": "ffn.w2",
}
"""Planner target → module of a GELU block (a 2-matrix MLP, no gate)."""

BASE_FORMATS = ("bf16", "nf4", "nf4-dq", "int8")
"""The planner's ``--base-format`` values (planner/finetune.py ``BASE_FORMAT_BYTES``)."""


class LoRALinear(nn.Linear):
    """A frozen ``nn.Linear`` plus a trainable low-rank update (Hu et al. 2021, Sec. 4.1):
    ``y = x W^T + b + (alpha / r) (x A^T) B^T``. ``weight`` and ``bias`` keep their names
    (state-dict keys, tensor-parallel plans and FSDP units stay valid); ``weight`` may be
    an NF4 tensor (QLoRA), then its GEMM runs through torchao's ``linear_nf4``."""

    lora_a: nn.Parameter
    """A [r, in_features], Kaiming-uniform."""
    lora_b: nn.Parameter
    """B [out_features, r], zero at the start."""
    scale: float
    """alpha / r (Hu et al. 2021, Sec. 4.1)."""

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int, alpha: float) -> LoRALinear:
        """Take over ``linear``'s weight and bias (the same tensor objects, no copy)."""
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        linear.weight.requires_grad_(False)
        self.weight = linear.weight
        if linear.bias is not None:
            linear.bias.requires_grad_(False)
        self.bias = linear.bias
        device, dtype = linear.weight.device, linear.weight.dtype
        self.lora_a = nn.Parameter(torch.empty(rank, self.in_features, device=device, dtype=dtype))
        self.lora_b = nn.Parameter(torch.zeros(self.out_features, rank, device=device, dtype=dtype))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.scale = alpha / rank
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if lora_nf4.is_nf4(self.weight):
            base = lora_nf4.linear(x, self.weight)
            if self.bias is not None:
                base = base + self.bias
        else:
            base = F.linear(x, self.weight, self.bias)
        return base + F.linear(F.linear(x, self.lora_a), self.lora_b) * self.scale

    def extra_repr(self) -> str:
        rank = self.lora_a.shape[0]
        return f"{super().extra_repr()}, rank={rank}, scale={self.scale:g}"


def resolve_targets(targets: tuple[str, ...]) -> tuple[str, ...]:
    """The projections ``targets`` name (groups attn, mlp, all expanded, order kept), in
    the vocabulary the planner shares (contract/finetune_targets.py)."""
    if not any(t.strip() for t in targets):
        raise LoRAError("--lora-targets: names no projection; use attn, mlp, all or q,k,v,...")
    try:
        return contract_targets(",".join(targets))
    except TargetsError as exc:
        raise LoRAError(str(exc).rstrip(".")) from None


def _blocks(model: nn.Module) -> list[nn.Module]:
    layers = model.get_submodule("layers")
    return list(layers.values()) if isinstance(layers, nn.ModuleDict) else list(layers.children())


def target_modules(model: nn.Module, targets: tuple[str, ...]) -> list[str]:
    """Module paths inside a block of ``model`` for ``targets``; refuses what it lacks."""
    cfg: ModelConfig = model.cfg  # type: ignore[assignment]
    if cfg.experts > 1:
        raise LoRAError(
            f"--finetune lora/qlora: MoE models ({cfg.experts} experts) are not supported: "
            "the trainer has no adapters on expert MLPs (nor the planner's attention-only "
            "placement on them); fine-tune a dense model, or use --finetune full"
        )
    table = GELU_MODULES if cfg.activation == "gelu" else SWIGLU_MODULES
    names = resolve_targets(targets)
    # A group (mlp, all) means the projections the model has; a GELU MLP has no gate.
    named = {t.strip().lower() for t in targets}
    missing = [n for n in names if n not in table and n in named]
    names = tuple(n for n in names if n in table)
    if missing:
        raise LoRAError(
            f"--lora-targets: this model has a GELU MLP without a {missing[0]!r} "
            "projection; drop it (use q,k,v,o,up,down)"
        )
    return [table[n] for n in names]


def apply_lora(model: nn.Module, targets: tuple[str, ...], rank: int, alpha: float) -> int:
    """Replace the targeted ``nn.Linear`` of every block with a :class:`LoRALinear` (same
    weight tensors), freeze every other parameter (embeddings, norms, output layer,
    untargeted projections), and return the number of trainable parameters. Before any
    parallelism (tensor parallelism, recompute, FSDP) and before ``quantize_base_nf4``."""
    if not isinstance(rank, int) or rank <= 0:
        raise LoRAError(f"--lora-rank {rank}: must be 1 or more (8 is Hu et al.'s usual)")
    if alpha <= 0:
        raise LoRAError(f"--lora-alpha {alpha:g}: must be positive (e.g. 2 x rank)")
    paths = target_modules(model, targets)
    blocks = _blocks(model)
    linears: list[nn.Linear] = [block.get_submodule(p) for block in blocks for p in paths]  # type: ignore[misc]
    smallest = min(min(linear.in_features, linear.out_features) for linear in linears)
    if rank > smallest:
        raise LoRAError(
            f"--lora-rank {rank} exceeds the smallest targeted matrix dimension "
            f"{smallest}; use --lora-rank {smallest} or less"
        )
    for param in model.parameters():
        param.requires_grad_(False)
    for block in blocks:
        for path in paths:
            parent_path, _, leaf = path.rpartition(".")
            parent = block.get_submodule(parent_path)
            linear = parent.get_submodule(leaf)
            if type(linear) is not nn.Linear:
                raise LoRAError(
                    f"--lora-targets: {path} is a {type(linear).__name__}, not a plain "
                    "linear layer; apply LoRA before fp8, compile or any parallelism"
                )
            setattr(parent, leaf, LoRALinear.from_linear(linear, rank, alpha))
    return sum(p.numel() for p in trainable_parameters(model))


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters the optimizer steps (after ``apply_lora``: the adapters only)."""
    return [p for p in model.parameters() if p.requires_grad]


def trainable_state_dict_options(*, strict: bool = False) -> StateDictOptions:
    """DCP state-dict options for a LoRA checkpoint: only the trainable parameters (the
    frozen base comes from the pre-trained checkpoint again on resume), for
    ``get_model_state_dict``/``set_model_state_dict`` and the optimizer's twins.
    ``strict=False``: setting such a dict must not demand the frozen keys; a trainable key
    the checkpoint lacks already fails in ``dcp.load``."""
    return StateDictOptions(ignore_frozen_params=True, strict=strict)


def check_base_format(fmt: str) -> None:
    """Refuse a ``--base-format`` the trainer does not store: bf16 is plain LoRA's base,
    nf4-dq QLoRA's; torchao's NF4 always double-quantises, and int8 is not implemented."""
    if fmt in ("bf16", "nf4-dq"):
        return
    if fmt == "nf4":
        raise LoRAError(
            "--base-format nf4: torchao's NF4 always double-quantises its block scales; "
            "plan --base-format nf4-dq (0.127 bit per weight more than nf4's count)"
        )
    if fmt == "int8":
        raise LoRAError(
            "--base-format int8: the trainer has no 8-bit base weights; plan "
            "--base-format nf4-dq (QLoRA) or bf16 (LoRA)"
        )
    raise LoRAError(f"--base-format {fmt!r}: use one of {', '.join(BASE_FORMATS)}")


def _adapter_prefixes(state: dict[str, torch.Tensor]) -> list[str]:
    prefixes = [k[: -len(".lora_a")] for k in state if k.endswith(".lora_a")]
    for prefix in prefixes:
        for key in (f"{prefix}.lora_b", f"{prefix}.weight"):
            if key not in state:
                raise LoRAError(f"adapter state: {prefix}.lora_a without {key}; pass a full state")
    return prefixes


def merged_state_dict(
    state: dict[str, torch.Tensor], alpha_over_rank: float
) -> dict[str, torch.Tensor]:
    """A full (unsharded) LoRA/QLoRA state dict as plain weights: each adapted
    W + (alpha / r)·B·A (Hu et al. 2021, Sec. 4.1: "we can explicitly compute and store
    W = W0 + BA"), NF4 weights dequantised, the adapter keys dropped. The sum is taken in
    fp32 and stored in the base weight's dtype (an NF4 weight's original dtype)."""
    merged: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith((".lora_a", ".lora_b")):
            continue
        merged[key] = lora_nf4.dequantize(value) if lora_nf4.is_nf4(value) else value
    for prefix in _adapter_prefixes(state):
        base = merged[f"{prefix}.weight"]
        delta = state[f"{prefix}.lora_b"].float() @ state[f"{prefix}.lora_a"].float()
        merged[f"{prefix}.weight"] = (base.float() + alpha_over_rank * delta).to(base.dtype)
    return merged


def adapter_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Only the adapters (``….lora_a``, ``….lora_b``) of a full state dict."""
    return {k: v for k, v in state.items() if k.endswith((".lora_a", ".lora_b"))}
