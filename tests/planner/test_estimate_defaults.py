"""``plan estimate`` fills unpinned knobs with ``plan search``'s best under the pins, says
so, and with --explain says why the alternatives lost (issue 17, item 4)."""

from __future__ import annotations

import pytest

import planner
from planner.layout_search import search
from planner.request import EstimateRequest, run_request

BASE = dict(model="llama3-405b", gpu="H100-SXM-80GB", gpus="8192", seq_len="8k",
            global_batch="2048", tokens="15.6T")  # fmt: skip


def test_unpinned_knobs_are_the_searchs_best_under_the_pins() -> None:
    plan, notes = run_request(EstimateRequest(**BASE, tp=8, pp=16, cp=1, interleave=4))
    result = search(plan.model, plan.cluster, plan.training,
                    pinned={"tp": 8, "pp": 16, "cp": 1, "interleave": 4}, top_k=1)  # fmt: skip
    assert plan.layout == result.ranked[0].layout
    assert plan.layout.recompute == "none" and plan.estimate.fits
    assert any(n.startswith("--recompute none (`plan search`") for n in notes)
    assert not any(n.startswith("--tp") for n in notes)  # pinned knobs are not defaults


def test_explain_says_why_the_alternatives_lost() -> None:
    _, notes = run_request(EstimateRequest(**BASE, tp=8, pp=16, cp=1, interleave=4, explain=True))
    why = [n for n in notes if n.startswith("why: ")]
    assert why[0].startswith("why: runner-up tp8 pp16 cp1")
    assert any("--offload 0" in n and "does not fit" in n for n in why), why
    assert any(n.startswith("why: --recompute full: step +") for n in why), why


def test_fully_pinned_estimate_runs_no_search() -> None:
    plan, notes = run_request(EstimateRequest(
        **BASE, tp=8, pp=16, cp=1, dp=64, ep=1, zero="zero1", micro_batch=1, recompute="none",
        interleave=4, sequence_parallel=True, uneven_stages=False, activation_offload=0.0,
    ))  # fmt: skip
    assert not plan.estimate.fits  # the bare Llama 3 layout: no techniques, too much memory
    assert not any("plan search" in n for n in notes)


def test_nothing_fits_falls_back_and_says_so() -> None:
    small = {**BASE, "gpus": "8"}
    plan, notes = run_request(EstimateRequest(**small, tp=8))
    assert not plan.estimate.fits and plan.layout.recompute == "full"
    assert "`plan search` found no layout that fits under the given pins" in notes
    assert isinstance(plan.estimate, planner.Estimate)


def test_bad_memory_knob_flags_exit_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from scalectl.cli import main

    base = ["plan", "estimate", "--model", "llama3-8b", "--gpu", "H100", "--gpus", "64",
            "--seq-len", "8k", "--global-batch", "512"]  # fmt: skip
    for extra, message in (
        (["--offload", "1.5"], "--offload: a share of activations in [0, 1]"),
        (["--schedule", "bogus"], "--schedule 'bogus': use 1f1b or gpipe"),
        (["--microbatch-group", "0"], "--microbatch-group: must be a positive whole number"),
        (["--pp", "1", "--uneven-stages"], "uneven_stages needs pipeline stages"),
    ):
        with pytest.raises(SystemExit) as exc:
            main([*base, *extra])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_dp_alone_lets_the_search_fill_the_model_parallel_degrees() -> None:
    plan, notes = run_request(EstimateRequest(**{**BASE, "gpus": "1024"}, dp=8))
    lo = plan.layout
    assert lo.dp == 8 and lo.tp * lo.pp * lo.cp == 128
    assert any(n.startswith("--pp ") and "plan search" in n for n in notes)
