"""The Python API (``from scalectl import plan_search, estimate, launch``): README's
example runs as written, on the local backend, and the Job handle's methods."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from launcher.errors import LaunchInputError
from launcher.states import JobState
from launcher.store import Store

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    found = re.search(r"<!-- python-api-example -->\n```python\n(.*?)```", text, re.S)
    assert found is not None, "README lost its Python API example"
    return found.group(1)


def test_the_readme_example_trains_and_the_handle_reads_the_job(
    capsys: pytest.CaptureFixture[str],
) -> None:
    scope: dict[str, Any] = {}
    exec(compile(readme_example(), str(README), "exec"), scope)
    job, plan = scope["job"], scope["plans"][0]
    assert scope["state"] is JobState.COMPLETED and job.state is JobState.COMPLETED
    assert (plan.layout.dp, plan.layout.tp) == (2, 2)
    printed = capsys.readouterr().out.split()
    assert printed[:2] == [job.id, "COMPLETED"] and printed[-1] == "2"
    progress = job.progress()
    assert progress.step == 2 and progress.loss is not None
    assert "training complete at step 2" in job.logs(0)
    assert job.logs(7) == ""  # no such rank
    summary = job.result(timeout=5)
    assert summary["final_step"] == 2
    assert (job.job_dir / "plan.json").is_file()
    assert job.cancel() is JobState.COMPLETED  # an ended job stays as it ended

    from scalectl import launch

    running = launch(plan, args=["--steps", "100000", "--eval-every", "0"], name="to-cancel")
    with pytest.raises(TimeoutError, match="still"):
        running.wait(timeout=0.1)
    assert running.cancel() is JobState.CANCELLED
    assert running.wait(timeout=60) is JobState.CANCELLED


def test_estimate_and_bad_input_create_nothing() -> None:
    import planner
    from planner.layout_search import NoFeasibleLayout
    from scalectl import estimate, launch, plan_search

    model = planner.ModelSpec(name="tiny", num_layers=2, hidden_size=64, num_attention_heads=4,
                              num_kv_heads=2, ffn_hidden_size=192, vocab_size=257)  # fmt: skip
    cluster = planner.ClusterSpec(gpu="H100", num_gpus=4, gpus_per_node=4)
    training = planner.TrainingSpec(seq_len=32, global_batch_seqs=8, total_tokens=2560)
    plan = estimate(model, cluster, training, planner.Layout(dp=2, tp=2, micro_batch=2))
    assert plan.estimate.step.time_s > 0 and plan.layout.tp == 2
    with pytest.raises(LaunchInputError, match="--nodes: 3 node"):
        launch(plan, nodes=3)
    with pytest.raises(LaunchInputError, match="--nodes 1:3: at 3 node"):
        launch(plan, nodes="1:3")
    with pytest.raises(LaunchInputError, match=r"plan layout\.tp 3: must divide"):
        launch(plan.model_dump(mode="json") | {"layout": {"dp": 1, "tp": 3}})
    with pytest.raises(LaunchInputError, match="no such file"):
        launch(Path("no-such-plan.json"))
    with pytest.raises(NoFeasibleLayout):
        plan_search(model, cluster.model_copy(update={"num_gpus": 1, "gpus_per_node": 1}),
                    training.model_copy(update={"global_batch_seqs": 7}), tp=2)  # fmt: skip
    with Store() as store:
        assert store.list_jobs() == []
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        import scalectl

        _ = scalectl.nope
