"""Fine-tuning requests (TrainingSpec.finetune): LoRA and QLoRA targets, ranks and the
frozen base weights' storage format, as the numbers the cost model consumes.

LoRA (Hu et al. 2021, Sec. 4) freezes the pre-trained weights and trains, beside each
targeted matrix W of d_in x d_out, a low-rank update B·A with A: d_in x r and B: r x d_out,
r·(d_in + d_out) parameters. QLoRA (Dettmers et al. 2023, Sec. 3) stores the frozen
weights of the transformer blocks' linear layers in 4-bit NormalFloat (NF4) with one FP32
absmax per block of 64, optionally quantising those constants again to 8 bits per block of
256 (double quantisation), and dequantises one layer at a time to BF16 for its GEMMs.
Embeddings, the output layer and the norms stay in BF16 (bitsandbytes replaces only the
blocks' nn.Linear modules).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from contract.finetune_targets import (
    ATTENTION_TARGETS,
    DEFAULT_TARGETS,
    MLP_TARGETS,
    TARGET_GROUPS,
    TargetsError,
)
from contract.finetune_targets import resolve_targets as contract_targets

from planner.errors import PlanInputError
from planner.model_spec import ModelSpec

__all__ = ["ATTENTION_TARGETS", "DEFAULT_TARGETS", "MLP_TARGETS", "TARGET_GROUPS"]
"""The target vocabulary (contract/finetune_targets.py), re-exported for the planner."""

if TYPE_CHECKING:
    from planner.specs import TrainingSpec

DEFAULT_RANK = 8
"""Hu et al. 2021 use r = 8 in most of their GPT-3 experiments (Table 4)."""

NF4_BITS = 4.0
NF4_BLOCK = 64.0
"""QLoRA, Sec. 3: NF4 quantisation blocks of 64 weights, one FP32 absmax each:
32/64 = 0.5 bit per parameter."""
DQ_BLOCK = 256.0
"""QLoRA, Sec. 3 (double quantisation): the FP32 absmaxes quantised to 8 bits in blocks
of 256, with one FP32 second-level constant per block: 8/64 + 32/(64·256) = 0.127 bit per
parameter (the paper's figure)."""

BASE_FORMAT_BYTES = {
    "bf16": 2.0,
    "nf4": (NF4_BITS + 32.0 / NF4_BLOCK) / 8.0,
    "nf4-dq": (NF4_BITS + 8.0 / NF4_BLOCK + 32.0 / (NF4_BLOCK * DQ_BLOCK)) / 8.0,
    # LLM.int8() (Dettmers et al. 2022, Sec. 3): one byte per weight plus one FP32 scale
    # per output row (4/d_in bytes per weight, < 0.1 % for d_in >= 4096: not counted).
    "int8": 1.0,
}
"""Bytes per frozen weight of a transformer block's linear layers, by storage format."""

UNCHUNKED_NF4_INIT_BYTES = 70.0
"""Bytes per element of the matrix being quantised at the peak of torchao 0.1's ``to_nf4``
as torchtune's NF4 ``copy_`` calls it when loading a checkpoint
(torchtune/utils/_register_nf4_dispatch_ops.py ``inplace_copy``, torchao 0.1
torchao/dtypes/nf4tensor.py): the 16-bit checkpoint tensor moved to the GPU (2; Llama 2's
Hugging Face checkpoint is FP16), its BF16 copy (``tensor.to(torch.bfloat16)``, 2), the
scaled blocks (``blocks / scales``, 2), and ``value - nf4`` with its ``.abs()`` while both
are alive (2 x 16 BF16 values, 64)."""


def resolve_targets(text: str | None) -> tuple[str, ...]:
    """The projections ``--lora-targets`` names (groups expanded, order kept, no repeats)."""
    try:
        return contract_targets(text)
    except TargetsError as exc:
        raise PlanInputError(str(exc)) from None


def matrix_dims(model: ModelSpec) -> dict[str, tuple[int, int]]:
    """(d_in, d_out) of each projection of a block (GQA: K and V are kv_heads·head_dim
    wide; GELU MLPs have no gate)."""
    h, f = model.hidden_size, model.ffn_hidden_size
    q = model.num_attention_heads * model.head_dim_eff
    kv = model.num_kv_heads * model.head_dim_eff
    dims = {"q": (h, q), "k": (h, kv), "v": (h, kv), "o": (q, h), "up": (h, f), "down": (f, h)}
    if model.activation == "swiglu":
        dims["gate"] = (h, f)
    return dims


def targeted_dims(model: ModelSpec, targets: tuple[str, ...]) -> list[tuple[int, int]]:
    """(d_in, d_out) of the targeted matrices of one block; refuses what is not modelled."""
    dims = matrix_dims(model)
    mlp = [t for t in targets if t in MLP_TARGETS]
    if mlp and model.num_experts > 1:
        raise PlanInputError(
            "--lora-targets: adapters on MoE expert MLPs are not modelled; use "
            "--lora-targets attn (or q,k,v,o)."
        )
    if "gate" in targets and "gate" not in dims:
        raise PlanInputError(
            f"--lora-targets: model {model.name!r} has a GELU MLP without a gate "
            "projection; drop 'gate' (use up,down)."
        )
    return [dims[t] for t in targets if t in dims]


def check_rank(model: ModelSpec, rank: int, targets: tuple[str, ...]) -> None:
    """Refuse a rank above a targeted matrix's smaller dimension (B·A would not be low rank)."""
    dims = targeted_dims(model, targets)
    smallest = min(min(d) for d in dims)
    if rank > smallest:
        raise PlanInputError(
            f"--lora-rank {rank} exceeds the smallest targeted matrix dimension "
            f"{smallest} of model {model.name!r}; use --lora-rank {smallest} or less."
        )


def adapter_width(model: ModelSpec, targets: tuple[str, ...]) -> tuple[float, float]:
    """(Σ (d_in + d_out), number) of the targeted matrices of one block: the adapters
    hold rank·Σ(d_in + d_out) parameters per block (Hu et al. 2021, Sec. 4)."""
    dims = targeted_dims(model, targets)
    return float(sum(a + b for a, b in dims)), float(len(dims))


def describe(training: TrainingSpec, model: ModelSpec) -> str | None:
    """One line for the plan's header: what a fine-tuning plan trains; None otherwise."""
    if training.finetune is None:
        return None
    if training.finetune == "full":
        return f"full fine-tuning: all {model.num_params:,.0f} parameters trained"
    targets = resolve_targets(training.lora_targets)
    rank = training.lora_rank or DEFAULT_RANK
    width, _ = adapter_width(model, targets)
    trained = rank * width * model.num_layers
    base = f", base in {training.base_format or 'nf4-dq'}" if training.finetune == "qlora" else ""
    return (
        f"{training.finetune} fine-tuning, rank {rank} on {','.join(targets)}{base}: "
        f"{trained:,.0f} of {model.num_params:,.0f} parameters trained "
        f"({trained / model.num_params:.2%})"
    )


def finetune_inputs(
    training: TrainingSpec, model: ModelSpec, weight_bytes: float
) -> dict[str, float]:
    """The fine-tuning fields of :class:`planner.inputs.Inputs`: ``frozen`` (1: the base
    weights take no gradients or optimizer states), ``base_weight_bytes`` (bytes per frozen
    block weight), ``lora_rank``, ``lora_width`` (Σ d_in + d_out of the targeted matrices of
    a block), ``lora_matrices`` (their number), ``dequant`` (1: QLoRA dequantises each
    layer's weights before its GEMMs), ``quant_inputs`` (micro-batches whose quantised
    matmul inputs are held, TrainingSpec.qlora_input_copies) and ``nf4_init_bytes`` (the transient
    of quantising the largest block matrix at init, TrainingSpec.nf4_init_unchunked).
    Pre-training and full fine-tuning give zeros and the training precision's weight
    bytes."""
    if training.finetune not in ("lora", "qlora"):
        return {
            "frozen": 0.0, "base_weight_bytes": weight_bytes, "lora_rank": 0.0,
            "lora_width": 0.0, "lora_matrices": 0.0, "dequant": 0.0, "quant_inputs": 0.0,
            "nf4_init_bytes": 0.0,
        }  # fmt: skip
    targets = resolve_targets(training.lora_targets)
    rank = training.lora_rank or DEFAULT_RANK
    check_rank(model, rank, targets)
    width, matrices = adapter_width(model, targets)
    qlora = training.finetune == "qlora"
    base = BASE_FORMAT_BYTES[training.base_format or "nf4-dq"] if qlora else weight_bytes
    dequant = qlora and base < BASE_FORMAT_BYTES["bf16"]
    unchunked = dequant and training.nf4_init_unchunked
    largest = float(max(a * b for a, b in matrix_dims(model).values()))
    return {
        "frozen": 1.0, "base_weight_bytes": base, "lora_rank": float(rank),
        "lora_width": width, "lora_matrices": matrices, "dequant": 1.0 if dequant else 0.0,
        "quant_inputs": float(training.qlora_input_copies) if dequant else 0.0,
        "nf4_init_bytes": UNCHUNKED_NF4_INIT_BYTES * largest if unchunked else 0.0,
    }  # fmt: skip
