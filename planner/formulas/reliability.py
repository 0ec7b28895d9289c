"""Failures, checkpoints and restarts: expected wall time and goodput of a long run.

A synchronous training job stops when any of its GPUs (or their hosts, links, switches)
fails. With independent failures at a rate of one per ``mtbf_gpu`` GPU-hours, a job on n
GPUs is interrupted every M = mtbf_gpu / n on average (exponentially distributed).

The job saves a checkpoint every tau seconds of work; a save takes C seconds of
checkpoint I/O (the model and optimizer state over the storage bandwidth). After an
interruption it spends R seconds restarting (detection, rescheduling, start-up, and the
checkpoint reload) and redoes the work since the last checkpoint.

* Optimum interval, first order (Young 1974, "A first order approximation to the
  optimum checkpoint interval", CACM 17(9)): tau = sqrt(2·C·M).
* Expected wall time of T_s seconds of work under exponential failures (Daly 2006,
  "A higher order estimate of the optimum checkpoint interval for restart dumps", FGCS
  22(3), Sec. 3): T_w = M · e^(R/M) · (e^((tau + C)/M) - 1) · T_s / tau.
* Goodput = T_s / T_w (Llama 3 reports "more than 90 % effective training time");
  expected interruptions = T_w / M.
"""

from __future__ import annotations

from planner.formulas.ops import Num, exp, expm1, maximum, sqrt

EXP_LIMIT = 700.0
"""Exponents are capped here so that an absurd MTBF gives a huge, finite wall time."""


def job_mtbf_s(mtbf_gpu_s: Num, gpus: Num) -> Num:
    """Mean time between interruptions of a job on ``gpus`` GPUs, seconds."""
    return mtbf_gpu_s / gpus


def young_interval_s(checkpoint_s: Num, mtbf_s: Num) -> Num:
    """Young's optimum checkpoint interval sqrt(2·C·M), seconds of work between saves."""
    return sqrt(2 * checkpoint_s * mtbf_s)


def daly_wall_time_s(
    work_s: Num, interval_s: Num, checkpoint_s: Num, restart_s: Num, mtbf_s: Num
) -> Num:
    """Expected wall time to complete ``work_s`` seconds of work (Daly 2006, Sec. 3)."""
    restart_factor = exp(_capped(restart_s / mtbf_s))
    segment = expm1(_capped((interval_s + checkpoint_s) / mtbf_s))
    return mtbf_s * restart_factor * segment * work_s / interval_s


def _capped(x: Num) -> Num:
    return x - maximum(x - EXP_LIMIT, 0.0)
