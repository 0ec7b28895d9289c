"""The job's summary, computed from its directory alone (events, progress, telemetry,
plan), so any node agent can write it and the last one to finish has the whole story.

Definitions:

* ``wall_s``: from the first ``agent_started`` event of the job to the end.
* ``productive_s``: the step times (rank 0's ``step_time_s``) of the steps that are part
  of the final model: a step that was run again after a rollback counts once, its last
  run. ``goodput = productive_s / wall_s`` (the "ML productivity goodput" of
  Google's Goodput blog, 2024: time spent on progress that was kept, over wall time).
* ``steps_lost``: step runs that a rollback threw away (rank 0's records whose step
  was run again later).
* ``restarts_by_cause``: the agents' ``restarted`` events by cause; ``peer_failure``
  restarts (a node restarting because a rank elsewhere failed) are counted apart, so
  one fault on a two-node job counts once.
* ``faults``: per restart or stop, the time from the fault to the next completed step
  (``fault_ts``: the injected fault's own event when there is one, else the last step
  before a hang, else the moment the failure was seen) and the steps it cost. For a
  restart the next step is the first after the failure was seen, so the figures do not
  depend on when the ``restarted`` event itself was written.
* ``energy``: GPU energy from the NVML energy counters in the telemetry files (last
  minus first reading per GPU and node), and per step over rank 0's last unbroken run
  of steps against the plan's GPU power x step time (see :func:`energy`).
"""

from __future__ import annotations

import bisect
from collections import Counter
from typing import Any

from contract.events import EventKind, read_events
from contract.jobdir import JobDir, read_all_jsonl

SECONDARY_CAUSES = frozenset({"peer_failure"})
J_PER_MWH = 3.6e9
FAULT_MATCH_WINDOW_S = 600.0
"""An injected fault is matched to a restart seen at most this long after it."""
TS_ROUNDING_S = 0.001
"""The agent writes ``detected_ts``/``fault_ts`` rounded to the millisecond, so a failure
seen within a millisecond of the fault can read as seen just before it."""


def job_summary(job: JobDir, end_ts: float) -> dict[str, Any]:
    # Records without a numeric ts (hand-edited, or a writer's bug) cannot be placed.
    events = [e.record for e in read_events(job) if e.ts is not None]
    rank0 = [
        r
        for r in read_all_jsonl(job.progress_file(0))
        if isinstance(r.get("step"), int) and isinstance(r.get("ts"), int | float)
    ]
    starts = [e["ts"] for e in events if e.get("event") == EventKind.AGENT_STARTED]
    start_ts = min(starts) if starts else (events[0]["ts"] if events else end_ts)
    wall_s = max(0.0, end_ts - start_ts)

    final: dict[int, dict[str, Any]] = {}
    for record in rank0:
        final[record["step"]] = record
    productive_s = sum(float(r.get("step_time_s") or 0.0) for r in final.values())
    restarts = [
        e for e in events if e.get("event") == EventKind.RESTARTED and e.get("source") == "agent"
    ]
    by_cause = Counter(str(e.get("cause")) for e in restarts)
    secondary = sum(by_cause.pop(c, 0) for c in SECONDARY_CAUSES)
    return {
        "wall_s": round(wall_s, 3),
        "productive_s": round(productive_s, 3),
        # A program that reports no steps has no productive time to measure: its goodput
        # is unknown, not zero.
        "goodput": round(productive_s / wall_s, 4) if wall_s > 0 and final else None,
        "final_step": max(final) if final else None,
        "steps_run": len(rank0),
        "steps_lost": len(rank0) - len(final),
        "restarts": sum(by_cause.values()),
        "restarts_by_cause": dict(sorted(by_cause.items())),
        "peer_restarts": secondary,
        "resizes": [
            {k: e.get(k) for k in ("ts", "node", "world_size_then", "world_size", "cause")}
            for e in events
            if e.get("event") == EventKind.RESIZED and e.get("source") == "agent"
        ],
        "stragglers": [
            {k: e.get(k) for k in ("ts", "node", "rank", "ratio")}
            for e in events
            if e.get("event") == EventKind.STRAGGLER_DETECTED
        ],
        "faults": fault_recoveries(events, rank0),
        "energy": energy(job, rank0),
    }


def fault_recoveries(
    events: list[dict[str, Any]], rank0: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per primary restart and per stop: fault time, detection, recovery, steps lost."""
    ts_sorted = sorted(rank0, key=lambda r: r["ts"])
    times = [r["ts"] for r in ts_sorted]
    injected = [e for e in events if e.get("event") == EventKind.FAULT_INJECTED]
    used: set[int] = set()
    out: list[dict[str, Any]] = []
    for event in events:
        kind = event.get("event")
        if event.get("source") != "agent" or kind not in (EventKind.RESTARTED, EventKind.STOPPED):
            continue
        if kind == EventKind.RESTARTED and event.get("cause") in SECONDARY_CAUSES:
            continue
        seen_ts = float(event.get("detected_ts") or event["ts"])
        fault_ts = float(event.get("fault_ts") or seen_ts)
        spec = None
        for index, fault in enumerate(injected):
            if (
                index not in used
                and -TS_ROUNDING_S <= seen_ts - fault["ts"] <= FAULT_MATCH_WINDOW_S
            ):
                used.add(index)
                fault_ts, spec = float(fault["ts"]), fault.get("spec")
                break
        # Steps finished by the time the failure was seen: a rank can still write the
        # step it finished a few milliseconds after another rank's fault fired.
        before = bisect.bisect_right(times, max(fault_ts, seen_ts))
        last_step = ts_sorted[before - 1]["step"] if before else 0
        # Recovery is the next step after the failure was seen, not after the restart was
        # recorded (which can come after the new workers' first steps, or at the very end
        # when no scan saw them): torchrun reports a failure only once it has stopped that
        # round's workers, so this node's later records are the new round's. A stop is
        # recorded as the agent ends, and its ranks may finish a step after the signal.
        if kind == EventKind.RESTARTED:
            after = before
        else:
            after = bisect.bisect_right(times, float(event["ts"]))
        entry: dict[str, Any] = {
            "kind": "preemption" if kind == EventKind.STOPPED else event.get("cause"),
            "node": event.get("node"),
            "fault": spec,
            "fault_ts": round(fault_ts, 3),
            "detect_s": round(max(0.0, seen_ts - fault_ts), 3),
            "last_step_before": last_step,
        }
        if after < len(ts_sorted):
            nxt = ts_sorted[after]
            entry["recovered_ts"] = round(nxt["ts"], 3)
            entry["time_to_recover_s"] = round(nxt["ts"] - fault_ts, 3)
            entry["resumed_at_step"] = nxt["step"] - 1
            entry["steps_lost"] = max(0, last_step - (nxt["step"] - 1))
        else:
            entry["time_to_recover_s"] = None
        out.append(entry)
    return out


def energy(job: JobDir, rank0: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Measured GPU energy (NVML counters) for the whole job and per step, against the plan.

    ``measured_j`` is every GPU's counter, last minus first reading, over the whole job
    (start-up and checkpoints included); ``planned_mwh`` is the plan's facility energy
    (host power and PUE included) for its whole token budget, so the two are shown side
    by side, not divided. The like-for-like check is ``per_step``: GPU energy between
    rank 0's first and last progress record of its final attempt, per step, against the
    plan's ``gpu_power_w`` x ``time_s`` x GPUs.
    """
    series: list[list[tuple[float, float]]] = []
    measured_j: float | None = None
    for path in job.telemetry_files():
        by_gpu: dict[tuple[str, int], list[tuple[float, float]]] = {}
        for record in read_all_jsonl(path):
            ts = record.get("ts")
            for gpu in record.get("gpus") or []:
                value = gpu.get("energy_j")
                if isinstance(value, int | float):
                    key = (str(gpu.get("uuid")), int(gpu.get("index", 0)))
                    stamp = float(ts) if isinstance(ts, int | float) else float("nan")
                    by_gpu.setdefault(key, []).append((stamp, float(value)))
        for readings in by_gpu.values():
            measured_j = (measured_j or 0.0) + readings[-1][1] - readings[0][1]
            series.append(readings)
    # Imported here: the Plan model is pydantic, which the agent must not pay for at start.
    from contract.plan import Plan, PlanError, ratio, read_plan

    plan: Plan | None = None
    if job.plan_json.is_file():
        try:
            plan = read_plan(job)
        except PlanError:
            plan = None  # the summary is written regardless; the plan is a comparison
    train = plan.estimate.train if plan is not None else None
    planned_mwh = train.energy_mwh if train is not None else None
    result: dict[str, Any] = {
        "gpus_measured": len(series),
        "measured_j": round(measured_j, 1) if measured_j is not None else None,
        "planned_mwh": planned_mwh,
    }
    if measured_j is None:
        result["note"] = "no NVML energy counter in the telemetry (no GPU, or not sampled)"
        return result
    result["measured_mwh"] = measured_j / J_PER_MWH
    per_step = steady_energy_per_step(series, rank0 or [])
    if per_step is not None:
        planned_j = plan.gpu_energy_per_step_j() if plan is not None else None
        power_w = plan.step.gpu_power_w if plan is not None else None
        j_ratio = ratio(per_step["measured_j_per_step"], planned_j)
        power_ratio = ratio(per_step["measured_w_per_gpu"], power_w)
        if planned_j is not None and power_w is not None and j_ratio is not None:
            per_step["planned_j_per_step"] = round(planned_j, 2)
            per_step["planned_w_per_gpu"] = round(power_w, 1)
            per_step["j_per_step_ratio"] = round(j_ratio, 3)
            per_step["power_ratio"] = round(power_ratio, 3) if power_ratio is not None else None
        result["per_step"] = per_step
    return result


def steady_energy_per_step(
    series: list[list[tuple[float, float]]], rank0: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """GPU energy per step and mean power per GPU over rank 0's last unbroken run of steps.

    The window runs from the first to the last record of that run (its first step, which
    carries warm-up, is outside it); each GPU's counter is interpolated linearly at both
    ends. None when the window is not covered by at least two readings of every GPU.
    """
    run: list[dict[str, Any]] = []
    for record in reversed(rank0):
        if run and record["step"] >= run[-1]["step"]:
            break
        run.append(record)
    run.reverse()
    if len(run) < 2 or not series:
        return None
    t0, t1 = float(run[0]["ts"]), float(run[-1]["ts"])
    steps = run[-1]["step"] - run[0]["step"]
    if t1 <= t0 or steps <= 0:
        return None
    total_j = 0.0
    for readings in series:
        stamps = [ts for ts, _ in readings]
        if not (stamps[0] <= t0 and stamps[-1] >= t1):
            return None
        total_j += _at(readings, t1) - _at(readings, t0)
    return {
        "steps": steps,
        "seconds": round(t1 - t0, 3),
        "measured_j_per_step": round(total_j / steps, 2),
        "measured_w_per_gpu": round(total_j / (t1 - t0) / len(series), 1),
    }


def _at(readings: list[tuple[float, float]], ts: float) -> float:
    """A monotonic counter's value at ``ts``, linear between the readings around it."""
    i = bisect.bisect_left(readings, (ts, float("-inf")))
    if i == 0 or (i < len(readings) and readings[i][0] == ts):
        return readings[min(i, len(readings) - 1)][1]
    if i == len(readings):
        return readings[-1][1]
    (ta, ea), (tb, eb) = readings[i - 1], readings[i]
    return ea + (eb - ea) * (ts - ta) / (tb - ta)


def _by_cause(by_cause: dict[str, int]) -> str:
    """`` (signal 1, exit 2)`` for people, not a Python dict."""
    if not by_cause:
        return ""
    return " (" + ", ".join(f"{cause} {n}" for cause, n in by_cause.items()) + ")"


def format_summary(summary: dict[str, Any]) -> str:
    """A few lines for people (the agent prints it at the end)."""
    goodput = summary["goodput"]
    lines = [
        f"wall {summary['wall_s']:.1f}s, productive {summary['productive_s']:.1f}s, "
        f"goodput {goodput:.1%}"
        if goodput is not None
        else f"wall {summary['wall_s']:.1f}s",
        (
            f"final step {summary['final_step']}, steps lost to rollbacks {summary['steps_lost']}"
            if summary["final_step"] is not None
            else "no training steps reported (the program writes no progress records)"
        )
        + f", restarts {summary['restarts']}"
        + _by_cause(summary["restarts_by_cause"]),
    ]
    for fault in summary["faults"]:
        recover = fault.get("time_to_recover_s")
        lines.append(
            f"  {fault['kind']} on {fault['node']}: "
            + (f"recovered in {recover:.2f}s" if recover is not None else "not recovered")
            + f", {fault.get('steps_lost', '?')} steps lost"
        )
    energy_summary = summary["energy"]
    measured = energy_summary.get("measured_j")
    if measured is not None:
        planned = energy_summary.get("planned_mwh")
        lines.append(
            f"GPU energy {measured / 1e3:,.1f} kJ for the whole job"
            + (f" (plan, facility, whole budget: {planned * 1e3:.3g} kWh)" if planned else "")
        )
    per_step = energy_summary.get("per_step")
    if per_step and "planned_j_per_step" in per_step:
        p = per_step
        lines.append(
            f"GPU energy per step {p['measured_j_per_step']:,.1f} J at "
            f"{p['measured_w_per_gpu']:.0f} W/GPU; plan {p['planned_j_per_step']:,.1f} J at "
            f"{p['planned_w_per_gpu']:.0f} W/GPU (x{p['j_per_step_ratio']})"
        )
    return "\n".join(lines)
