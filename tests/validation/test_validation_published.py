"""The planner against published measurements (public.yaml, and extra.yaml's further runs).

Tolerances (issue 3): throughput and memory within 10 %, iteration time within 15 %,
the Llama 2 energy cases within 10 %. How each row becomes planner input, including the
rules for knobs the papers do not state, is in ``cases.py``'s docstring.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from tests.validation.cases import TOLERANCE, Check, extra_checks, public_checks

PUBLIC = public_checks()
EXTRA = extra_checks()


def _describe(check: Check) -> str:
    return (
        f"{check.id}: predicted {check.predicted:.4g} vs published {check.published:g} "
        f"({check.error:+.1%}, tolerance ±{TOLERANCE[check.kind]:.0%}; {check.source})"
    )


FSDP_OUTSIDE = {
    "fsdp_throughput-mpt-1b-64gpus": "Composer + FSDP1 (torch 2.1), modelled as eager kernels, "
    "fsdp_version 1 (its gradient pre-divide and FP32 cast) and llm-foundry's Triton "
    "FlashAttention as the 'triton' kernel (the same table's 32k-64k rows, extra.yaml, within "
    "3 %). With compute slowed by the FSDP traffic hidden under it and the cast of each "
    "layer's gradient to FP32 (issue 17) 13b +36.1 -> +1.8 %, 7b +18.8 -> +8.6 %, 30b +10.6 "
    "-> +4.9 % and 70b +13.4 -> +5.3 % pass, and over the source's whole H100 BF16 table at "
    "seq 2048 (29 rows, 24 of them not rows here) the median |error| goes 16.2 -> 4.5 %, 27 "
    "of 29 within 10 %; 1b +16.2 -> +10.5 % stays just outside, and what it keeps is not "
    "communication: +9..+11 % from 8 to 64 GPUs with its FSDP traffic under 1 % of the step",
}
"""public.yaml's llm-foundry rows the planner models but misses by more than the
throughput tolerance (open, issue 17); pinned to fail like OUTSIDE below."""


@pytest.mark.parametrize(
    "check",
    [
        pytest.param(
            c,
            id=c.id,
            marks=[pytest.mark.xfail(strict=True, reason=FSDP_OUTSIDE[c.id])]
            if c.id in FSDP_OUTSIDE
            else [],
        )
        for c in PUBLIC
    ],
)
def test_public_case(check: Check) -> None:
    assert check.ok, _describe(check)


def test_fsdp_outside_list_names_real_rows() -> None:
    assert set(FSDP_OUTSIDE) <= {c.id for c in PUBLIC}


# NumParams of the llm-foundry README table (scripts/train/benchmarking/README.md,
# "H100 80GB BF16", the rows public.yaml takes, seq 2048): the MPT reading in cases.py
# (biases, learned positions, tied embeddings) must reproduce them exactly.
MPT_NUM_PARAMS = {
    "mpt-1b": 1_315_950_592,
    "mpt-7b": 6_658_859_008,
    "mpt-13b": 12_853_954_560,
    "mpt-30b": 29_975_214_080,
    "mpt-70b": 64_862_437_376,
}


def test_mpt_models_have_the_sources_parameter_counts() -> None:
    from tests.validation.cases import PUBLIC as PUBLIC_YAML
    from tests.validation.cases import load, mpt

    section = load(PUBLIC_YAML)["fsdp_throughput"]
    for name, arch in section["models"].items():
        model = mpt(name, arch, section["common"]["vocab"], 2048)
        assert model.num_params == MPT_NUM_PARAMS[name], name


def test_extra_mpt_rows_have_the_sources_parameter_counts() -> None:
    from tests.validation.cases import EXTRA as EXTRA_YAML
    from tests.validation.cases import load, mpt

    section = load(EXTRA_YAML)["fsdp_throughput"]
    for row in section["cases"]:
        arch = section["models"][row["model"]]
        model = mpt(row["model"], arch, section["common"]["vocab"], row["seq_len"])
        assert model.num_params == row["num_params"], row["model"]
    long_rows = [c for c in EXTRA if c.id.startswith("extra-fsdp_throughput-")]
    assert len(long_rows) == 5 and all(c.fits for c in long_rows)


@pytest.mark.parametrize("check", EXTRA, ids=[c.id for c in EXTRA])
def test_further_published_run(check: Check) -> None:
    assert check.ok, _describe(check)


def test_every_public_section_is_checked() -> None:
    kinds = {check.kind for check in PUBLIC}
    assert kinds == {"throughput", "memory", "iteration_time", "energy"}
    # 5 throughput rows, 2 x 3 memory figures, 2 x 2 iteration times, 3 x 3 energy checks,
    # 5 llm-foundry FSDP rows
    assert len(PUBLIC) == 5 + 6 + 4 + 9 + 5
    fsdp = [c for c in PUBLIC if c.id.startswith("fsdp_throughput-")]
    assert len(fsdp) == 5 and all(c.metric == "tokens_per_s_per_gpu" for c in fsdp)
    assert all(c.fits for c in fsdp)  # the published runs ran: the memory model fits them


# --- published.yaml: 2024-25 H100 runs (Megatron-LM, NeMo, Megatron-Bridge, torchtitan) ----

from tests.validation.published import published_checks  # noqa: E402

PUBLISHED = list(published_checks())

_TORCH_RING = (
    "torch ring attention at cp 4 and 8 (Table 2): the planner prices torch's "
    "context_parallel from its source (ring_attention torch: FP32 merges and dK/dV ring, "
    "the K/V all-gather hidden under step 0 only; 1.3 s of the 128k step, 2.7 s of 256k) "
    "and its FLOPs exactly (round-robin load balance: step 0 causal on both local chunks, "
    "each later step non-causal on half of q or of k/v). The table's 32k (fsdp 8) and 64k "
    "(cp 2) rows keep 32k tokens a GPU, as these do (train.py at 9dec370 divides a dp "
    "rank's tokens by cp); their steps, 8.42 and 12.90 s, put one more ring step at 4.5 s "
    "at the same kernel shapes (chunks of 16k keys in every row), so 21.9 s at 128k and "
    "39.8 s at 256k before the ring's own cost; the published 30.6 and 59.8 s take 7.4 s "
    "a ring step at cp 4 and at cp 8 alike, 1.65x the cp 2 row's. Table 6 (405B, the CP "
    "ring across nodes) grows alike after its cp 1 row (-1.8, +11.8, +12.1, +24.1 %). "
    "What costs the extra 2.9 s a step is not in the source's algorithm; open"
)

OUTSIDE = {
    "megatron-readme-gpt-32b": "tp 8, dp 48: each data-parallel ring has one GPU a node, so "
    "the planner reduce-scatters 4B FP32 gradients (16 GB) and gathers 8 GB of weights on "
    "one 400 Gb/s NIC per step (0.52 s), 0.17 s of it hidden under the last micro-batch's "
    "backward and the first one's forward (Megatron f2e5db402c: --overlap-grad-reduce, "
    "--overlap-param-gather, bf16 forces FP32 reduction, arguments.py), leaving 31 % of a "
    "1.04 s step exposed; the published 459.6 TFLOP/s is a 0.89 s step, 0.17 s above the "
    "planner's compute, and 16b (same 4B parameters a GPU, two GPUs a node: half the "
    "reduction time) runs only 6 % faster. The compute its hidden reduction slows (issue 17, "
    "at 1/8 of the NVLink rate) moved it -14.6 -> -15.7 %, the chunked GEMMs of its TP "
    "overlap (planner.terms.compute.tp_overlap_chunk_time) to -16.7 %. The windows are the code's: "
    "f2e5db402c runs the first m - 1 micro-batches under no_sync "
    "(forward_backward_no_pipelining), so the reduce-scatter hides only under the last "
    "backward, and the all-gather runs bucket by bucket, one ahead, from zero_grad into the "
    "first forward (distrib_optimizer.py _dispatch_gather_model_params); the ring moves "
    "(n-1)/n of each buffer at 45 GB/s (50 GB/s NIC x 0.9) a GPU, 90 for 16b. The planner's "
    "compute is 0.719 s for 32b and 0.717 s for 16b; the published steps are 0.892 and "
    "0.850 s, 0.04 s apart, where 4B parameters x 6 bytes at half 16b's bandwidth add "
    "0.25 s (0.50 against 0.25 s), both beyond the code's windows (last backward ~0.12 s, "
    "first forward ~0.06 s). The README's pair fits one NIC a GPU only "
    "if 32b moved half the bytes (BF16 gradients: the planner then gives +2.0 %, but "
    "arguments.py forces FP32 under bf16) or had twice the bandwidth: the source gives "
    "neither, so the row is left here",
    "torchtitan-2024-12-llama3-8b-128k-fsdp2-cp4": _TORCH_RING,
    "torchtitan-2024-12-llama3-8b-256k-fsdp1-cp8": _TORCH_RING,
}
"""Rows the planner models but misses by more than their tolerance (open, issue 17): each
is pinned to fail, so fixing one makes its test fail until it moves out of this list."""


def _pinned(check: Check) -> Any:
    marks = []
    if check.id in OUTSIDE:
        marks.append(pytest.mark.xfail(strict=True, reason=OUTSIDE[check.id]))
    return pytest.param(check, id=check.id, marks=marks)


MODELLED = [c for c in PUBLISHED if not c.known_gap]


@pytest.mark.parametrize("check", [_pinned(c) for c in MODELLED])
def test_published_run(check: Check) -> None:
    assert check.ok, _describe(check)


def test_known_gaps_are_listed_with_their_figure_and_reason() -> None:
    gaps = [c for c in PUBLISHED if c.known_gap]
    assert {c.id for c in gaps} == {
        "megatron-bridge-25.11-gpt-oss-120b",
        "megatron-bridge-25.11-qwen3-30b-a3b",
    }
    for check in gaps:
        assert check.published > 0 and len(check.known_gap or "") > 20
        assert check.regime["moe"]
        # a prediction where the planner can evaluate the layout, else NaN (shown as —)
        assert check.predicted > 0 or math.isnan(check.predicted)
    qwen3 = next(c for c in PUBLISHED if "qwen3-235b" in c.id)
    assert qwen3.regime["moe"] and not qwen3.known_gap and qwen3.predicted > 0
    # DeepSeek-V3 is planned with its run's settings (published.yaml: etp 1, the MoE
    # all-to-all overlapped, TP collectives exposed, BF16 gradient reduction after backward);
    # with the generic defaults the EP all-to-all alone was 22 of 40 s and the row -37 %.
    deepseek = next(c for c in PUBLISHED if c.id.endswith("deepseek-v3"))
    assert deepseek.regime["moe"] and not deepseek.known_gap and deepseek.ok


def test_outside_list_names_real_rows() -> None:
    assert set(OUTSIDE) <= {c.id for c in MODELLED}


def test_every_published_row_names_its_source_and_layout() -> None:
    assert len(PUBLISHED) == 9 + 7 + 6 + 7 + 13  # sections in published.yaml order
    for check in PUBLISHED:
        assert "/" in check.source and check.layout
        assert check.tolerance is not None and 0 < check.tolerance <= 0.25


def test_flop_convention_full_counts_the_whole_score_matrix() -> None:
    import planner
    from tests.validation.published import flops_per_token

    model = planner.get_model("llama2-7b")
    full, causal = flops_per_token(model, 4096, "full"), flops_per_token(model, 4096, "causal")
    # NeMo 24.07's table: 16934 tokens/s/GPU is 780 model TFLOP/s in its (full) convention.
    assert 16934 * full / 1e12 == pytest.approx(780, abs=1)
    assert causal < full
