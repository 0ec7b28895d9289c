"""One physics, three paths: the compiled scalar function, the plain scalar evaluation
(Python floats through planner.formulas.ops) and the numpy array evaluation agree."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import planner
from planner.core import Outputs, evaluate
from planner.estimator import compiled_for
from planner.inputs import Inputs, build_inputs, constants, stack_inputs
from planner.trace import Sym, Tracer

MODELS = ["llama3-8b", "mixtral-8x7b", "megatron-175b", "llama2-70b"]


def candidates() -> list[
    tuple[planner.ModelSpec, planner.ClusterSpec, planner.TrainingSpec, planner.Layout]
]:
    out = []
    for name, (tp, pp, cp), sharding, recompute, kernel, (
        kernels,
        policy,
        fsdp,
    ) in itertools.product(
        MODELS,
        [(1, 1, 1), (8, 1, 1), (4, 4, 2), (2, 8, 1)],
        ["none", "zero1", "zero3", "hsdp"],
        ["none", "selective", "full"],
        ["flash", "unfused", "fa3"],
        [("fused", "attention", 2), ("eager", "op", 1)],
    ):
        model = planner.get_model(name)
        gpus = 256
        dp = gpus // (tp * pp * cp)
        lo = planner.Layout(
            dp=dp,
            tp=tp,
            pp=pp,
            cp=cp,
            sharding=sharding,
            hsdp_shard_size=8 if sharding == "hsdp" else None,
            recompute=recompute,
            micro_batch=2,
            interleave=2 if pp > 1 else 1,
            sequence_parallel=tp > 1,
            ep=8 if model.is_moe and dp % 8 == 0 else 1,
        )
        cl = planner.ClusterSpec(gpu="H100", num_gpus=gpus)
        tr = planner.TrainingSpec(
            seq_len=4096, global_batch_seqs=dp * 8, total_tokens=1e12, attention_kernel=kernel,
            kernels=kernels, selective_recompute=policy, fsdp_version=fsdp,
        )  # fmt: skip
        if not planner.layout_problems(model, cl, tr, lo):
            out.append((model, cl, tr, lo))
    return out


CANDIDATES = candidates()


def _inputs(case: tuple) -> Inputs:  # type: ignore[type-arg]
    model, cl, tr, lo = case
    return build_inputs(model, cl.accelerator(), cl, tr, lo)


def test_enough_candidates() -> None:
    assert len(CANDIDATES) > 200


def test_compiled_equals_plain_scalar() -> None:
    for case in CANDIDATES:
        x = _inputs(case)
        plain = evaluate(x, constants())
        fast = compiled_for(x)(x)
        for name, a, b in zip(Outputs._fields, plain, fast, strict=True):
            assert float(a) == pytest.approx(float(b), rel=1e-12, abs=1e-12), (name, case[3])


def test_numpy_arrays_equal_scalars() -> None:
    xs = [_inputs(case) for case in CANDIDATES]
    with np.errstate(all="raise"):  # both sides of every where must be finite
        arrays = evaluate(stack_inputs(xs), constants())
    for i, x in enumerate(xs):
        fast = compiled_for(x)(x)
        for name, column, b in zip(Outputs._fields, arrays, fast, strict=True):
            assert float(np.asarray(column)[i]) == pytest.approx(float(b), rel=1e-12, abs=1e-12), (
                name,
                CANDIDATES[i][3],
            )


def test_estimate_compiles_a_variant_once_it_is_reused() -> None:
    from planner import estimator

    model, cl, tr, lo = CANDIDATES[0]
    model = model.model_copy(update={"name": "fresh-object"})  # not seen by other tests
    plain = evaluate(_inputs((model, cl, tr, lo)), constants())
    for _ in range(estimator.COMPILE_AFTER_USES + 1):
        est = planner.estimate(model, cl, tr, lo)
        assert est.step.time_s == pytest.approx(plain.step_time_s, rel=1e-12)
        assert est.memory_gib.total == pytest.approx(plain.total_gib, rel=1e-12)
    assert any(entry[0] is model for entry in estimator._PREPARED.values())


def test_tracing_refuses_branches_on_values() -> None:
    tracer = Tracer()
    x = tracer.node("input", 0)
    with pytest.raises(TypeError, match="branched on a value"):
        if x > 1:  # a formula must use ops.where instead
            pass


def test_all_outputs_finite() -> None:
    for case in CANDIDATES:
        x = _inputs(case)
        for name, value in zip(Outputs._fields, compiled_for(x)(x), strict=True):
            assert math.isfinite(float(value)), (name, case[3])


def test_sym_is_not_hashable() -> None:
    with pytest.raises(TypeError):
        hash(Sym(Tracer(), 0))


def test_candidate_inputs_vectorise_the_layout() -> None:
    model = planner.get_model("llama3-8b")
    cl = planner.ClusterSpec(gpu="H100", num_gpus=64)
    tr = planner.TrainingSpec(seq_len=4096, global_batch_seqs=256, total_tokens=1e12)
    layouts = [
        planner.Layout(
            dp=64 // (tp * pp), tp=tp, pp=pp, sharding=sh, recompute=rc, sequence_parallel=tp > 1
        )
        for tp, pp, sh, rc in itertools.product(
            (1, 2, 8), (1, 2, 4), ("zero1", "zero3"), ("none", "full")
        )
    ]
    x = planner.candidate_inputs(
        model,
        cl.accelerator(),
        cl,
        tr,
        dp=[lo.dp for lo in layouts],
        tp=[lo.tp for lo in layouts],
        pp=[lo.pp for lo in layouts],
        sharding=[lo.sharding for lo in layouts],
        recompute=[lo.recompute for lo in layouts],
        sp=[float(lo.sequence_parallel) for lo in layouts],
    )
    out = evaluate(x, constants())
    for i, lo in enumerate(layouts):
        est = planner.estimate(model, cl, tr, lo)
        again = planner.to_estimate(lo, planner.candidate(out, i))
        assert again.step.time_s == pytest.approx(est.step.time_s, rel=1e-12)
        assert again.memory_gib.total == pytest.approx(est.memory_gib.total, rel=1e-12)
        assert again.train.co2_t == pytest.approx(est.train.co2_t, rel=1e-12)
