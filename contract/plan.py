"""``plan.json``: the Plan document, one model, one reader, and plan-against-measured.

The planner writes a ``Plan`` (planner.result: model, cluster, training, layout,
estimate); ``scalectl launch`` copies it into the job directory. Its readers (the
reference trainer, the agent's summary, the TUI, ``scalectl jobs``) read it here, through
:func:`read_plan`/:func:`parse_plan`, which validate it and raise :class:`PlanError` with
one line naming the field for a document that is not a Plan of this schema version.

The model pins what those readers use, with types; each section keeps the planner's
other fields as they are (``extra="allow"``): the planner owns its specs and may grow
them without a contract change, while a reader can rely on every field declared here.
Sections and fields may be absent: a ``plan:`` block typed into job.yaml often has a
few numbers only, and a reader shows a missing number as missing.

``schema_version`` is absent from documents written before it existed; they have this
same shape and read as version 1.

The arithmetic that sets a measurement against the plan is here, once:
:func:`measured_mfu`, :func:`gpu_energy_per_step_j`, :func:`facility_energy_per_step_j`
(also as methods of :class:`Plan`) and :func:`ratio`; ``contract.run_facts`` puts them
together for ``scalectl jobs --json`` (``against_plan``) with the trainer's newer figures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contract.jobdir import JobDir

PLAN_SCHEMA_VERSION = 1
"""Version of the Plan document; bump with a migration note when a declared field changes."""

J_PER_MWH = 3.6e9
"""Joules per megawatt-hour (SI)."""


class PlanError(ValueError):
    """plan.json is missing, unreadable, of another schema version or not a Plan."""


class _Section(BaseModel):
    # Strict: "3" is not a number of layers, and 2.5 is not a micro-batch. The planner's
    # undeclared fields ride along untouched.
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)


class PlanModel(_Section):
    """``model``: the planner's ModelSpec (the trainer builds its model from these)."""

    name: str | None = None
    """Catalog or user name of the model."""
    num_layers: int | None = None
    """Transformer blocks."""
    hidden_size: int | None = None
    """Width of the residual stream."""
    num_attention_heads: int | None = None
    """Query heads."""
    num_kv_heads: int | None = None
    """Key/value heads (GQA when fewer than query heads)."""
    ffn_hidden_size: int | None = None
    """Width of the MLP's hidden layer."""
    vocab_size: int | None = None
    """Tokens in the vocabulary."""
    tied_embeddings: bool | None = None
    """Input embedding and output projection share weights."""
    activation: str | None = None
    """Feed-forward: swiglu or gelu."""
    norm: str | None = None
    """rmsnorm or layernorm."""
    bias: bool | None = None
    """Biases in the projections and norms."""
    head_dim: int | None = None
    """Size of one attention head (None: hidden_size / num_attention_heads)."""
    num_experts: int | None = None
    """Experts per MoE layer (1 or None: a dense model)."""
    top_k: int | None = None
    """MoE: experts each token is routed to."""
    moe_ffn_hidden_size: int | None = None
    """MoE: inner width of one routed expert (None: ffn_hidden_size)."""
    shared_expert_ffn_hidden_size: int | None = None
    """MoE: inner width of the shared experts together (0 or None: none)."""
    dense_first_layers: int | None = None
    """MoE: leading layers with a dense MLP instead of experts."""
    router_score: str | None = None
    """MoE: the router's score function, softmax or sigmoid."""
    sliding_window: int | None = None
    """Keys a query of a windowed layer attends to (None: every layer sees the sequence)."""
    full_attention_every: int | None = None
    """With sliding_window: every k-th layer attends to the whole sequence (None: none)."""


class PlanGpu(_Section):
    """``cluster.gpu``: the catalog entry of the GPU."""

    name: str | None = None
    """Catalog name (``H100-SXM-80GB``)."""


class PlanCluster(_Section):
    """``cluster``: the planner's ClusterSpec."""

    gpu: PlanGpu | str | None = None
    """The GPU, as its catalog entry (or, in hand-written plans, its name)."""
    num_gpus: int | None = None
    """GPUs of the run."""
    num_nodes: int | None = None
    """Nodes of the run."""
    gpus_per_node: int | None = None
    """GPUs per node."""

    @property
    def gpu_name(self) -> str | None:
        return self.gpu.name if isinstance(self.gpu, PlanGpu) else self.gpu


class PlanTraining(_Section):
    """``training``: the planner's TrainingSpec."""

    seq_len: int | None = None
    """Tokens per sequence."""
    global_batch_seqs: int | None = None
    """Sequences per optimiser step, the whole job."""
    total_tokens: float | None = None
    """Token budget of the run."""
    precision: str | None = None
    """bf16 (mixed, FP32 master weights), bf16-pure (BF16 weights, gradients and optimizer
    states), fp8 or fp32."""
    compile: bool | None = None
    """Whether the trainer compiles each transformer block (``torch.compile``); the
    planner's estimate does not depend on it."""
    moe_capacity_factor: float | None = None
    """MoE: expert capacity as a multiple of an even share of the tokens; None: dropless."""
    finetune: str | None = None
    """None: pre-training; 'full', 'lora' or 'qlora' fine-tuning (frozen base weights with
    low-rank adapters for lora/qlora)."""
    lora_rank: int | None = None
    """LoRA adapter rank r (the planner's default when None)."""
    lora_targets: str | None = None
    """Projections with adapters: attn, mlp, all or a comma list of q,k,v,o,gate,up,down."""
    lora_alpha: float | None = None
    """LoRA scale numerator (the update is scaled by alpha / r)."""
    base_format: str | None = None
    """qlora: storage of the frozen weights: bf16, nf4, nf4-dq or int8."""


class PlanLayout(_Section):
    """``layout`` (and ``estimate.layout``): the planner's Layout."""

    dp: int | None = None
    """Data-parallel degree."""
    tp: int | None = None
    """Tensor-parallel degree."""
    pp: int | None = None
    """Pipeline stages."""
    cp: int | None = None
    """Context-parallel degree."""
    cp_impl: str | None = None
    """How cp is realised: ``allgather`` (keys/values all-gathered over the cp group, Llama
    3 paper section 3.3.2) or ``ring`` (ring attention, p2p overlapped with attention).
    A layout field, beside cp: it changes the time and memory the planner prices, not
    the training recipe. None: allgather."""
    ep: int | None = None
    """Expert-parallel degree."""
    expert_tp: int | None = None
    """MoE: tensor-parallel degree of the experts (None: tp)."""
    sharding: str | None = None
    """none, zero1, zero2, zero3 or hsdp."""
    micro_batch: int | None = None
    """Sequences per micro-batch per data-parallel rank."""
    recompute: str | None = None
    """none, selective or full."""
    interleave: int | None = None
    """Virtual pipeline stages per rank."""
    sequence_parallel: bool | None = None
    """With tp > 1, norms and the residual stream are also split along the sequence."""
    hsdp_shard_size: int | None = None
    """With sharding hsdp: data-parallel ranks of one shard group (divides dp)."""
    schedule: str | None = None
    """Pipeline schedule: 1f1b (interleaved when interleave > 1) or gpipe."""
    uneven_stages: bool | None = None
    """The first and the last pipeline stage hold one block fewer than the others."""

    def text(self) -> str:
        """``dp8 tp2 pp1 cp1 zero3 mb1 rc=selective``: the layout in one short line."""
        parts = [f"{key}{getattr(self, key) or 1}" for key in ("dp", "tp", "pp", "cp")]
        if self.sharding and self.sharding != "none":
            parts.append(self.sharding)
        parts.append(f"mb{self.micro_batch or 1}")
        if self.recompute not in (None, "none"):
            parts.append(f"rc={self.recompute}")
        if (self.interleave or 1) > 1:
            parts.append(f"vpp{self.interleave}")
        if (self.ep or 1) > 1:
            parts.append(f"ep{self.ep}")
        return " ".join(parts)


class PlanMemory(_Section):
    """``estimate.memory_gib``: per-GPU memory of the most loaded GPU."""

    params: float | None = None
    """Weights after the layout's splits and sharding, GiB."""
    grads: float | None = None
    """Gradient buffers, GiB."""
    optimizer: float | None = None
    """Master weights and optimizer states, GiB."""
    total: float | None = None
    """Predicted peak, GiB."""
    capacity: float | None = None
    """The GPU's memory, GiB."""


class PlanStep(_Section):
    """``estimate.step``: one optimiser step."""

    time_s: float | None = None
    """Step time, seconds."""
    tokens_per_s: float | None = None
    """Tokens per second, the whole job."""
    mfu: float | None = None
    """Model FLOPs utilisation, 0..1."""
    bubble_fraction: float | None = None
    """Share of the step the pipeline's busiest stage idles (0 without a pipeline)."""
    gpu_power_w: float | None = None
    """Mean power per GPU during the step, watts (plans before it existed lack it)."""


class PlanTrain(_Section):
    """``estimate.train``: the whole run."""

    steps: int | None = None
    """Optimiser steps of the run."""
    energy_mwh: float | None = None
    """Facility energy of the run (GPUs, hosts, PUE), MWh."""


class PlanEstimate(_Section):
    """``estimate``: the planner's Estimate of the layout."""

    layout: PlanLayout | None = None
    """The layout estimated."""
    memory_gib: PlanMemory | None = None
    """Per-GPU memory."""
    fits: bool | None = None
    """The layout fits in memory."""
    step: PlanStep | None = None
    """One step."""
    train: PlanTrain | None = None
    """The whole run."""


class Plan(BaseModel):
    """The document in ``<job_dir>/plan.json``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    schema_version: int = PLAN_SCHEMA_VERSION
    """Version of this document (absent in plans written before it existed: version 1)."""
    model: PlanModel = Field(default_factory=PlanModel)
    """The model."""
    cluster: PlanCluster = Field(default_factory=PlanCluster)
    """The cluster."""
    training: PlanTraining = Field(default_factory=PlanTraining)
    """Sequence, batch, budget and numerics."""
    layout: PlanLayout = Field(default_factory=PlanLayout)
    """The parallel layout."""
    estimate: PlanEstimate = Field(default_factory=PlanEstimate)
    """The planner's prediction for this layout."""

    @property
    def step(self) -> PlanStep:
        return self.estimate.step or PlanStep()

    @property
    def steps(self) -> int | None:
        return self.estimate.train.steps if self.estimate.train else None

    def layout_text(self) -> str | None:
        """The layout in one line (``estimate.layout`` when ``layout`` is empty)."""
        layout = self.layout
        if not layout.model_fields_set and self.estimate.layout is not None:
            layout = self.estimate.layout
        return layout.text() if layout.model_fields_set else None

    def measured_mfu(self, tokens_per_s: float | None, gpus_measured: int | None) -> float | None:
        """MFU of the running job from its throughput.

        MFU = observed tokens/s x model FLOPs per token / (GPUs x peak FLOP/s) (Chowdhery
        et al. 2022, "PaLM", Appendix B). FLOPs per token and the peak are the plan's, so

            mfu_measured = mfu_planned x (tokens/s measured / tokens/s planned)
                           x (GPUs planned / GPUs measured)

        which needs no FLOP count and stays right when an elastic job runs on fewer GPUs.
        """
        step = self.step
        return measured_mfu(
            step.mfu, step.tokens_per_s, self.cluster.num_gpus, tokens_per_s, gpus_measured
        )

    def gpu_energy_per_step_j(self) -> float | None:
        """The GPUs' own planned energy per step (see :func:`gpu_energy_per_step_j`)."""
        return gpu_energy_per_step_j(self.step.gpu_power_w, self.step.time_s, self.cluster.num_gpus)

    def facility_energy_per_step_j(self) -> float | None:
        """Facility energy of the run (GPUs + hosts, times PUE) over its steps."""
        train = self.estimate.train or PlanTrain()
        return facility_energy_per_step_j(train.energy_mwh, train.steps)


def measured_mfu(
    planned_mfu: float | None,
    planned_tokens_per_s: float | None,
    planned_gpus: int | None,
    tokens_per_s: float | None,
    gpus_measured: int | None,
) -> float | None:
    """Measured MFU from measured throughput and the plan's MFU (see Plan.measured_mfu)."""
    if planned_mfu is None or not planned_tokens_per_s or tokens_per_s is None:
        return None
    scale = planned_gpus / gpus_measured if planned_gpus and gpus_measured else 1.0
    return planned_mfu * tokens_per_s / planned_tokens_per_s * scale


def gpu_energy_per_step_j(
    gpu_power_w: float | None, step_time_s: float | None, gpus: int | None
) -> float | None:
    """The GPUs' own energy per step: mean power per GPU x GPUs x step time, J (the basis
    NVML's energy counters measure, host power and PUE excluded)."""
    if gpu_power_w is None or step_time_s is None or not gpus:
        return None
    return gpu_power_w * step_time_s * gpus


def facility_energy_per_step_j(energy_mwh: float | None, steps: int | None) -> float | None:
    """The run's facility energy (GPUs + hosts, times PUE) over its steps, J."""
    if energy_mwh is None or not steps:
        return None
    return energy_mwh * J_PER_MWH / steps


def ratio(measured: float | None, planned: float | None) -> float | None:
    """measured / planned, or None when either is missing or the plan says zero."""
    if measured is None or planned is None or planned == 0:
        return None
    return measured / planned


_EXPECTED = {
    "int_type": "expected int",
    "int_parsing": "expected int",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "model_type": "expected an object",
    "model_attributes_type": "expected an object",
    "dict_type": "expected an object",
    "extra_forbidden": "unknown field",
    "missing": "missing",
}


def parse_plan(document: Any, source: str = "plan") -> Plan:
    """Validate a Plan document (parsed JSON); PlanError names ``source`` and the field."""
    if not isinstance(document, dict):
        raise PlanError(f"{source}: expected a JSON object (a planner Plan)")
    version = document.get("schema_version", PLAN_SCHEMA_VERSION)
    if version != PLAN_SCHEMA_VERSION:
        raise PlanError(
            f"{source}: plan schema_version {version!r}: this scalectl reads version "
            f"{PLAN_SCHEMA_VERSION}; plan again with this scalectl"
        )
    try:
        return Plan.model_validate(document)
    except ValidationError as exc:
        error = exc.errors()[0]
        # A value that is neither a PlanGpu nor a string reports once per union member.
        loc = [str(part) for part in error["loc"] if part not in ("PlanGpu", "str")]
        where = ".".join(loc)
        what = _EXPECTED.get(error["type"], error["msg"])
        shown = "" if error["type"] in ("missing", "extra_forbidden") else f" {error['input']!r}"
        raise PlanError(f"{source}: plan {where}{shown}: {what}") from None


def read_plan(path: Path | JobDir) -> Plan:
    """Read and validate a plan.json (a path, or a job directory's)."""
    file = path.plan_json if isinstance(path, JobDir) else Path(path)
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(f"{file}: no such file; pass the plan.json the planner wrote") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PlanError(f"{file}: not a readable JSON file ({exc})") from None
    return parse_plan(document, str(file))
