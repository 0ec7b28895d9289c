"""The rows of published.yaml as planner inputs, and the planner's prediction for each.

One rule set for every row (not tuned per row); what a source leaves unstated takes the
value its section's ``common`` names, each stated there with its reason:

* Layout: dp = GPUs / (tp·pp·cp); ``vp`` is the interleave (Megatron's virtual pipeline
  size); expert parallelism ``ep`` inside dp, or with ``etp`` (expert tensor parallelism,
  Megatron's MoE parallel folding) ep·etp ranks over the stage's tp·cp·dp. Sequence
  parallelism whenever tp > 1 (NeMo and Megatron-LM performance recipes, torchtitan's TP
  plan all shard the norms).
* Megatron GPT (the README table): GELU MLP of 4h, biases, LayerNorm, learned positions,
  vocabulary and sequence from the README, Megatron-LM's default dropout 0.1.
* Gradient reduction overlapped with backward everywhere (all three stacks default to it).
* Element-wise kernels (TrainingSpec.kernels): fused for Megatron-LM / NeMo (fused
  kernels, Transformer Engine) and for torchtitan runs with torch.compile; eager for
  torchtitan's "no compile" rows. A row's selective recompute is the attention core
  unless it names torchtitan's op policy (``selective_recompute: op``).
* A figure in TFLOP/s is compared in the source's own FLOP convention: the planner's
  tokens/s times the source's FLOPs per token (``full``: the whole s x s attention
  matrix; ``causal``: half of it, the planner's own model_tflops_per_gpu).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import planner
from planner import ClusterSpec, Layout, ModelSpec, TrainingSpec
from planner.catalog import get_gpu
from planner.errors import PlanInputError
from planner.formulas import flops, params
from tests.validation.cases import Check, load, megatron_gpt

PUBLISHED = Path(__file__).resolve().parent / "published.yaml"

ACCELERATORS: dict[str, tuple[str, dict[str, float]]] = {
    # torchtitan benchmarks/llama3_h100_202412_torchtitan.md, "Hardware": H100 with 96 GB
    # HBM2e at 2.4 TB/s, run at the default 500 W power limit, 400 Gb/s RDMA per GPU. The
    # chip is the SXM-class H100 (the HBM2e part takes power caps from 200 to 700 W:
    # Ujeniya et al. 2026, arXiv 2604.11391, Sec. 3), so its rates are the SXM datasheet's
    # at the clock the 500 W limit leaves (planner.formulas.step.power_capped_clock_fraction).
    # Its footnote 2 (the MFU peak "is between SXM and NVL") is the source's MFU basis; these
    # rows compare tokens/s, which does not depend on it.
    "grand-teton-h100": (
        "H100-SXM-80GB",
        {
            "hbm_gib": 96.0,
            "hbm_tb_s": 2.4,
            "power_limit_w": 500.0,
            "inter_node_gb_s_per_gpu": 50.0,
        },
    ),
}


def accelerator(name: str) -> Any:
    """A catalog GPU, or one of ACCELERATORS (a catalog GPU with a source's own facts)."""
    if name not in ACCELERATORS:
        return name
    base, overrides = ACCELERATORS[name]
    spec = get_gpu(base)
    return spec.model_copy(update={"name": name, **overrides})


def model_of(row: dict[str, Any]) -> ModelSpec:
    """The row's model: a catalog name, an inline spec, or the Megatron README's GPT."""
    if "model_spec" in row:
        return ModelSpec(**row["model_spec"])
    if row.get("architecture") == "megatron-gpt":
        return megatron_gpt(f"gpt-{row['id']}", row, row["seq_len"], row["vocab"], 4)
    return planner.get_model(row["model"])


def flops_per_token(model: ModelSpec, seq_len: int, convention: str) -> float:
    """Model FLOPs per token (training, no recompute) in a source's attention convention."""
    head_dim = model.head_dim or model.hidden_size // model.num_attention_heads
    moe_ffn = model.moe_ffn_hidden_size or model.ffn_hidden_size
    gated = 1.0 if model.activation == "swiglu" else 0.0
    moe_mm = params.layer_matmul_params_active(
        model.hidden_size, model.num_attention_heads, model.num_kv_heads, head_dim,
        model.ffn_hidden_size, gated, model.num_experts, model.top_k, moe_ffn,
        model.shared_expert_ffn_hidden_size,
    )  # fmt: skip
    dense_mm = params.layer_matmul_params_active(
        model.hidden_size, model.num_attention_heads, model.num_kv_heads, head_dim,
        model.ffn_hidden_size, gated, 1.0, 1.0, model.ffn_hidden_size, 0.0,
    )  # fmt: skip
    share = params.moe_layer_share(model.num_layers, model.dense_first_layers, model.num_experts)
    layer_mm = params.mixed(moe_mm, dense_mm, share)
    mm = flops.matmul_flops_fwd_per_token(
        model.num_layers, layer_mm, model.vocab_size, model.hidden_size
    )
    window, share = float(model.sliding_window or 0), model.windowed_layers / model.num_layers
    fraction = 1.0 if convention == "full" else flops.model_key_fraction(seq_len, window, share)
    attn = flops.attention_flops_fwd_per_token(
        model.num_layers, model.num_attention_heads, head_dim, seq_len, fraction
    )
    return float(3 * (mm + attn))


def estimate_row(row: dict[str, Any]) -> tuple[planner.Estimate, ModelSpec]:
    """The planner's estimate for one row (common keys already merged in)."""
    model = model_of(row)
    tp, pp, cp, ep = row["tp"], row.get("pp", 1), row.get("cp", 1), row.get("ep", 1)
    layout = Layout(
        dp=row["gpus"] // (tp * pp * cp),
        tp=tp,
        pp=pp,
        cp=cp,
        ep=ep,
        expert_tp=row.get("etp"),
        micro_batch=row["micro_batch"],
        interleave=row.get("vp", 1),
        recompute=row["recompute"],
        sharding=row["sharding"],
        sequence_parallel=tp > 1,
    )
    training = TrainingSpec(
        seq_len=row["seq_len"],
        global_batch_seqs=row["global_batch"],
        total_tokens=1e12,
        precision=row["precision"],
        attention_kernel=row["attention_kernel"],
        tp_comm_overlap=row["tp_comm_overlap"],
        kernels=row.get("kernels", "fused"),
        selective_recompute=row.get("selective_recompute", "attention"),
        ep_comm_overlap=row.get("ep_comm_overlap", False),
        cross_entropy_fusion=row.get("cross_entropy_fusion", True),
        grad_reduce_dtype=row.get("grad_reduce_dtype", "fp32"),
        overlap_grad_reduce=row.get("overlap_grad_reduce", True),
        fp8_scaling=row.get("fp8_scaling", "delayed"),
        fp8_param_gather=row.get("fp8_param_gather", False),
        ring_attention=row["ring_attention"],
    )
    cluster = ClusterSpec(gpu=accelerator(row["gpu"]), num_gpus=row["gpus"])
    return planner.estimate(model, cluster, training, layout), model


def regime(row: dict[str, Any], model: ModelSpec) -> dict[str, Any]:
    """What the error band is keyed by: MoE or dense, pipeline or not, sequence length."""
    return {"moe": model.num_experts > 1, "pp": row.get("pp", 1) > 1, "seq_len": row["seq_len"]}


def published_checks(path: Path = PUBLISHED) -> Iterator[Check]:
    """Every row of published.yaml, known gaps included (marked)."""
    for section in load(path)["sections"]:
        for case in section["cases"]:
            row = {**section["common"], **case}
            metric = section["metric"]
            convention = section.get("flop_convention")
            if metric != "tokens_per_s_per_gpu":
                metric = f"{metric} ({convention} attention FLOPs)"
            model = model_of(row)
            try:
                est, model = estimate_row(row)
            except PlanInputError:
                if not row.get("known_gap"):
                    raise
                predicted, fits = math.nan, None  # cannot evaluate: shown, not scored
            else:
                fits = est.fits
                tokens_per_gpu = est.step.tokens_per_s / row["gpus"]
                per_token = 1.0
                if convention is not None:
                    per_token = flops_per_token(model, row["seq_len"], convention) / 1e12
                predicted = tokens_per_gpu * per_token
            yield Check(
                id=f"{section['name']}-{row['id']}",
                kind="throughput",
                metric=metric,
                published=float(row["published"]),
                predicted=predicted,
                source=row.get("source", section["source"])
                + (f", {row['table']}" if "table" in row else ""),
                tolerance=section["tolerance"],
                known_gap=row.get("known_gap"),
                layout=_describe_layout(row),
                regime=regime(row, model),
                fits=fits,
            )


def _describe_layout(row: dict[str, Any]) -> str:
    parts = [f"{row['gpus']}x {row['gpu']}", f"tp{row['tp']}", f"pp{row.get('pp', 1)}"]
    if row.get("vp", 1) > 1:
        parts.append(f"vp{row['vp']}")
    if row.get("cp", 1) > 1:
        parts.append(f"cp{row['cp']}")
    if row.get("ep", 1) > 1:
        parts.append(f"ep{row['ep']}")
    parts += [row["sharding"], f"mb{row['micro_batch']}", f"s{row['seq_len']}", row["precision"]]
    parts += [f"{row['recompute']} recompute", row["attention_kernel"]]
    return " ".join(parts)


def all_checks() -> list[Check]:
    """Every validation row: public.yaml, extra.yaml, published.yaml and finetune.yaml, in
    that order."""
    from tests.validation.cases import extra_checks, public_checks
    from tests.validation.finetune import finetune_checks

    return [*public_checks(), *extra_checks(), *published_checks(), *finetune_checks()]
