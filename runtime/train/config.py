"""Trainer configuration: defaults, then a Plan file (``--plan``), then flags; validated.

Precedence: a flag given on the command line beats the Plan, which beats the default.
From a Plan (the planner's ``plan.json``) the trainer reads ``model.num_layers``,
``model.hidden_size``, ``model.num_attention_heads``, ``model.num_kv_heads``,
``model.ffn_hidden_size``, ``model.vocab_size``, ``model.tied_embeddings``,
``model.activation``, ``model.norm``, ``model.bias``, ``model.head_dim``,
``training.seq_len``, ``training.precision``, ``training.compile`` and the layout
(``layout.micro_batch``, ``dp``, ``tp``, ``pp``, ``cp``, ``cp_impl``, ``ep``,
``sequence_parallel``, ``sharding``, ``hsdp_shard_size``, ``recompute``), and derives
``grad_accum`` as ``training.global_batch_seqs / (layout.dp * layout.micro_batch)`` (the
planned global batch at the planned data-parallel size) and ``steps`` as
``training.total_tokens / (training.global_batch_seqs * training.seq_len)`` rounded up;
other fields are ignored.
Every error names the flag or Plan field that holds the bad value and how to fix it.
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, NoReturn

from contract.env import FAULTS_ENV, JOB_DIR_ENV, PLAN_FILE_ENV, TRAIN_DUMP_STATE_ENV, plan_file
from contract.env import job_dir as env_job_dir
from runtime.train.data import MIN_VOCAB
from runtime.train.finetune import FINETUNES, with_checkpoint_shape
from runtime.train.model import ModelConfig
from runtime.train.plan_fields import ConfigError, read_plan_fields
from runtime.train.validate import validate


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; fields map one-to-one to flags (``_`` → ``-``)."""

    layers: int = 4
    """Transformer blocks."""
    hidden: int = 128
    """Model width."""
    heads: int = 4
    """Query heads."""
    kv_heads: int = 2
    """Key/value heads (GQA); divides ``heads``."""
    ffn_hidden: int = 0
    """MLP inner width; 0 picks 8/3 * hidden rounded up to a multiple of 32 (Llama's
    SwiGLU), or 4 * hidden with --activation gelu (GPT)."""
    vocab: int = MIN_VOCAB
    """Embedding rows; at least 257 (bytes + end-of-document)."""
    tied_embeddings: bool = False
    """Share the input embedding with the output projection."""
    activation: str = "swiglu"
    """Feed-forward: swiglu (Llama) or gelu (GPT: 2-matrix MLP)."""
    norm: str = "rmsnorm"
    """rmsnorm (Llama) or layernorm (GPT)."""
    bias: bool = False
    """Biases in the projections and norms (GPT)."""
    head_dim: int = 0
    """Size of one attention head; 0: hidden / heads."""
    seq_len: int = 128
    """Tokens per training sequence."""
    micro_batch: int = 8
    """Sequences per rank per micro-step."""
    grad_accum: int = 1
    """Micro-steps per optimizer step; global batch = dp * grad_accum * micro_batch."""
    dp: int = 0
    """Data-parallel degree; 0: world size / (tp * pp * cp). Must multiply to the world size."""
    tp: int = 1
    """Tensor-parallel degree; divides heads and kv_heads."""
    pp: int = 1
    """Pipeline stages (torch.distributed.pipelining); the gradient accumulation is the
    schedule's micro-batches."""
    interleave: int = 1
    """Virtual pipeline stages per pipeline rank (interleaved 1F1B above 1)."""
    schedule: str = "1f1b"
    """Pipeline schedule: 1f1b (interleaved with --interleave > 1) or gpipe."""
    uneven_stages: bool = False
    """The first and the last pipeline stage hold one block fewer than the others."""
    cp: int = 1
    """Context-parallel degree: ranks that split each sequence (2 x cp divides seq_len)."""
    cp_impl: str = "allgather"
    """Context parallelism: allgather (keys/values all-gathered, Llama 3 section 3.3.2;
    runs everywhere) or ring (torch's context_parallel; CUDA only)."""
    ep: int = 1
    """Expert-parallel degree: ranks of the sharded data-parallel dimension (of the
    replicas under sharding none) that split each MoE layer's experts; divides --experts."""
    experts: int = 1
    """Routed experts per MoE layer (runtime/train/moe.py); 1: a dense model."""
    top_k: int = 1
    """Experts each token is routed to."""
    moe_ffn_hidden: int = 0
    """Inner width of one routed expert (SwiGLU); 0: --ffn-hidden."""
    shared_ffn_hidden: int = 0
    """Inner width of the shared experts every token passes through (DeepSeekMoE); 0: none."""
    dense_first_layers: int = 0
    """Leading blocks with the dense feed-forward instead of experts (DeepSeek-V3)."""
    router_score: str = "softmax"
    """Router score function: softmax (Switch, DeepSeekMoE) or sigmoid (DeepSeek-V3)."""
    moe_capacity_factor: float = 0.0
    """Expert capacity, a multiple (at least 1) of an even share of a micro-batch's
    assignments; beyond it assignments are dropped; 0: dropless."""
    moe_aux_loss_coef: float = 0.01
    """Weight of the Switch load-balancing loss (Fedus et al. 2021, Sec. 2.2); 0: off."""
    sequence_parallel: bool = False
    """With tp > 1, also split norms and the residual stream along the sequence."""
    sharding: str = "zero3"
    """Data-parallel sharding: none, zero1, zero2, zero3 or hsdp."""
    hsdp_shard_size: int = 0
    """With sharding hsdp: ranks of one shard group (divides dp); otherwise 0."""
    elastic_dp: bool = False
    """At each start derive dp from the world size (tp, pp, cp and hsdp_shard_size kept)
    and grad_accum so tokens per step stay dp * grad_accum * micro_batch as given: a
    planned job of a node range (set by the launcher)."""
    recompute: str = "none"
    """Activation recomputation per block: none, selective (attention core) or full."""
    precision: str = "auto"
    """fp32, bf16 (fp32 master weights and reductions; CUDA only), bf16-pure (the model
    trained in bf16: bf16 weights, gradients, reductions and AdamW states, no fp32 copy),
    fp8 (torchao float8 GEMMs, bf16 elsewhere; CUDA compute capability 8.9+, tp 1) or
    auto: bf16 on CUDA, fp32 on the CPU."""
    compile: bool = False
    """torch.compile each transformer block (inductor: a C++ compiler on the CPU, Triton on
    a GPU); exit 2 where it cannot."""
    loss_chunks: int = 0
    """Sequence chunks of the output projection and cross-entropy (runtime/train/loss.py);
    0: 8 at tp 1, 1 under tp (vocabulary-parallel loss); 1: unchunked."""
    lr: float = 3e-3
    """Peak learning rate (after warm-up)."""
    min_lr: float = 3e-4
    """Learning rate at the end of the cosine decay."""
    warmup_steps: int = 20
    """Linear warm-up steps."""
    steps: int = 200
    """Total optimizer steps of the job (across restarts)."""
    weight_decay: float = 0.1
    """AdamW decoupled weight decay on matrices (not on norms)."""
    clip_grad_norm: float = 1.0
    """Clip the global gradient 2-norm to this; 0 turns clipping off."""
    ckpt_every: int = 50
    """Checkpoint every N steps; 0: only at the end and on SIGTERM/SIGUSR2."""
    final_checkpoint: bool = True
    """Commit a checkpoint at the last step; off for benchmark runs that need no resume
    point (a multi-GB write, e.g. scripts/gpu_check.py)."""
    keep_checkpoints: int = 3
    """Complete checkpoints kept; older ones are deleted after each commit."""
    seed: int = 0
    """Seeds the initial weights and the data order."""
    eval_every: int = 50
    """Held-out loss every N steps (and before the first step of a fresh run); 0: never."""
    eval_sequences: int = 32
    """Held-out windows per evaluation (the same ones every time)."""
    log_every: int = 10
    """Print a progress line on rank 0 every N steps."""
    finetune: str = ""
    """Fine-tune the checkpoint of --from instead of pre-training: full (every weight),
    lora (low-rank adapters, the rest frozen) or qlora (lora over NF4 base weights);
    empty: pre-train from random weights."""
    init_from: str = ""
    """A Hugging Face checkpoint directory (config.json, *.safetensors,
    tokenizer.json) whose model, weights and tokenizer fine-tuning starts from."""
    lora_rank: int = 8
    """Rank r of each adapter (Hu et al. 2021 use 8 in most GPT-3 runs, Table 4)."""
    lora_alpha: float = 16.0
    """Adapter scale alpha (the update is alpha / r * B A); torchtune's recipes use 2 r."""
    lora_targets: str = "all"
    """Projections with adapters: attn, mlp, all, or a comma list of q,k,v,o,gate,up,down."""
    base_format: str = "nf4-dq"
    """qlora: storage of the frozen block weights (NF4 with double quantisation, QLoRA)."""
    data: str = "pydoc"
    """Corpus: ``pydoc`` (the Python Language Reference) or a text file / directory path."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu`` or ``cuda``."""
    dist_timeout_s: float = 600.0
    """Timeout of collectives before a rank gives up on a peer."""
    job_dir: str = ""
    """Job directory (``--job-dir`` or ``$SCALECTL_JOB_DIR``); empty: write no files."""

    def model_config(self) -> ModelConfig:
        return ModelConfig(
            layers=self.layers,
            hidden=self.hidden,
            heads=self.heads,
            kv_heads=self.kv_heads,
            ffn_hidden=self.ffn_hidden,
            vocab=self.vocab,
            seq_len=self.seq_len,
            tied=self.tied_embeddings,
            activation=self.activation,
            norm=self.norm,
            bias=self.bias,
            head_dim_override=self.head_dim,
            experts=self.experts,
            top_k=self.top_k,
            moe_ffn_hidden=self.moe_ffn_hidden,
            shared_ffn_hidden=self.shared_ffn_hidden,
            dense_first_layers=self.dense_first_layers,
            router_score=self.router_score,
            capacity_factor=self.moe_capacity_factor,
            aux_loss_coef=self.moe_aux_loss_coef,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


MODEL_FIELDS = ("layers", "hidden", "heads", "kv_heads", "ffn_hidden", "vocab", "tied_embeddings",
                "activation", "norm", "bias", "head_dim", "experts", "moe_ffn_hidden",
                "shared_ffn_hidden", "dense_first_layers")  # fmt: skip
"""Fields that fix the shapes of the parameters: a checkpoint only loads if they match."""

_EPILOG = f"""\
exit codes:
  0         reached --steps (a final checkpoint is committed unless
            --no-final-checkpoint)
  1         unhandled exception (including an injected crash)
  2         bad input: flags, --plan, {FAULTS_ENV}, --data, --job-dir, or a
            checkpoint of another model shape in the job directory
  128+N     stopped by signal N (143 SIGTERM, 140 SIGUSR2) after finishing the
            step and committing its checkpoint
environment:
  {JOB_DIR_ENV:<26} job directory when --job-dir is not given
  {PLAN_FILE_ENV:<26} the job's plan.json when --plan is not given
  {FAULTS_ENV:<26} fault injection (see runtime/faults.py)
  {TRAIN_DUMP_STATE_ENV:<26} 1: also dump full model/optimizer state at save/resume
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


FLAG_NAMES = {"init_from": "--from"}
"""Fields whose flag is not the field's name (``from`` is a Python keyword)."""


def _flag(name: str) -> str:
    return FLAG_NAMES.get(name, "--" + name.replace("_", "-"))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m runtime.train",
        description="Reference FSDP2 trainer (run under torchrun, or alone for one process).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--plan", help="planner Plan JSON to take the model shape from")
    docs = _field_docs()
    for item in fields(TrainConfig):
        help_text = f"{docs.get(item.name, '')} (default: {item.default!r})"
        if item.type in ("bool", bool):
            parser.add_argument(
                _flag(item.name),
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        else:
            kind = {"int": int, "float": float, "str": str}[str(item.type)]
            parser.add_argument(
                _flag(item.name), type=kind, default=None, dest=item.name, help=help_text,
                metavar=_flag(item.name).removeprefix("--").replace("-", "_").upper(),
            )  # fmt: skip
    return parser


def _field_docs() -> dict[str, str]:
    """Attribute docstrings of TrainConfig, for --help (read from the source once)."""
    import ast
    import inspect

    docs: dict[str, str] = {}
    tree = ast.parse(inspect.getsource(TrainConfig))
    body = tree.body[0].body  # type: ignore[attr-defined]
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
        ):
            docs[node.target.id] = str(after.value.value).replace("%", "%%")
    return docs


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    """Parse flags (and the Plan they name) into a validated TrainConfig."""
    args = vars(build_parser().parse_args(argv))
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    # A job launched from a Plan names its plan.json for every rank (contract.env); the
    # flag still wins, so a user's own --plan is what they asked for.
    flag_path = args.pop("plan")
    plan_path = Path(flag_path) if flag_path else plan_file()
    if plan_path is not None:
        flag = "--plan" if flag_path else PLAN_FILE_ENV
        for name, (value, where) in read_plan_fields(plan_path, flag).items():
            values[name], origin[name] = value, where
    for name, value in args.items():
        if value is not None:
            values[name], origin[name] = value, _flag(name)
    if not values.get("job_dir"):
        values["job_dir"] = str(env_job_dir() or "")
    config = TrainConfig(**values)
    if config.finetune in FINETUNES and config.init_from:
        config = with_checkpoint_shape(config, origin)
    if config.ffn_hidden == 0:
        # GPT's MLP is 4 x hidden wide (Radford et al. 2018, section 4.1).
        width = 4 * config.hidden if config.activation == "gelu" else None
        config = replace(config, ffn_hidden=width or default_ffn_hidden(config.hidden))
    validate(config, lambda name: origin.get(name, _flag(name)))
    return config


def default_ffn_hidden(hidden: int) -> int:
    """8/3 * hidden rounded up to a multiple of 32 (Touvron et al. 2023, section 2.2)."""
    return -(-(8 * hidden // 3) // 32) * 32
