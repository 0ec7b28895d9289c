"""The local backend: the job runs on this machine as an elastic torchrun.

``submit`` starts a small detached supervisor (``launcher.backends.local_supervisor``)
in a session of its own, so the job outlives the CLI and the terminal. The supervisor
starts one torchrun node agent per simulated node (``local.nodes``, default
``nodes.min``), records ``started``/``finished`` events and the job's state, enforces the
time limit, and on SIGTERM stops the agents gracefully (torchrun forwards SIGTERM to
the ranks, which checkpoint) before killing what is left.

The registry's ``backend_job_id`` is the supervisor's pid; since pids are reused, a
process only counts as the job's when its environment carries ``SCALECTL_JOB_ID``.
"""

from __future__ import annotations

import os
import random
import re
import shlex
import signal
import socket
import subprocess
import sys

import psutil

from contract.env import JOB_ID_ENV
from contract.events import EventKind
from contract.jobdir import JobDir, tail_jsonl
from launcher.backends.base import Backend, BackendStatus, CancelReport, SubmitRequest
from launcher.commands import Rendezvous, node_command, rank_environment
from launcher.errors import BackendUnavailableError, LaunchInputError
from launcher.spec import JobSpec
from launcher.states import JobState, parse_state
from launcher.store import JobRecord
from runtime.processes import (
    StopReport,
    job_processes,
    process_of_job,
    signal_processes,
    stop_processes,
)

SUPERVISOR_MODULE = "launcher.backends.local_supervisor"
LAST_CALL_TIMEOUT_S = 2
"""c10d ``last_call_timeout`` for local jobs: after ``min`` agents joined, wait this long
for more before starting (torch's default, 30 s, is tuned for clusters)."""
KEEP_ALIVE_INTERVAL_S = 1
KEEP_ALIVE_MAX_ATTEMPT = 3
"""c10d heartbeats: a node agent that stops beating for interval × attempts (3 s here,
15 s by torch's default) is dropped from the rendezvous, so a job that lost a node
re-forms at the smaller size that much sooner."""


def host_name() -> str:
    """This machine's short host name, made safe for a file name."""
    short = socket.gethostname().split(".")[0]
    return re.sub(r"[^A-Za-z0-9._-]", "-", short).strip(".-") or "localhost"


def local_node_names(host: str, count: int) -> list[str]:
    """Node names of ``count`` agents on one host: the host itself, or ``host-<i>``."""
    return [host] if count == 1 else [f"{host}-{i}" for i in range(count)]


def local_agent_count(spec: JobSpec) -> int:
    return spec.local.nodes if spec.local.nodes is not None else spec.nodes.min


def local_rendezvous(job_id: str, port: int) -> Rendezvous:
    return Rendezvous(
        endpoint=f"127.0.0.1:{port}",
        run_id=job_id,
        conf={
            "last_call_timeout": LAST_CALL_TIMEOUT_S,
            "keep_alive_interval": KEEP_ALIVE_INTERVAL_S,
            "keep_alive_max_attempt": KEEP_ALIVE_MAX_ATTEMPT,
        },
    )


LOCAL_RDZV_PORTS = 2700
"""How many ports below the kernel's ephemeral range local rendezvous ports are drawn from
(30068-32767 with Linux's default range): above the Slurm backend's 20000-29999, so a
local job and a Slurm job on one machine never aim at the same port."""


def ephemeral_port_floor() -> int:
    """First port of the kernel's ephemeral range (net.ipv4.ip_local_port_range)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(attempts: int = 50) -> int:
    """A TCP port free on 127.0.0.1 right now, below the ephemeral range.

    The port is probed here and bound later by torchrun's c10d store. A port the kernel
    hands out for ``bind(0)`` is an ephemeral one, which any outgoing connection on the
    machine (gloo opens many) may take in between: the job then dies with EADDRINUSE. The
    kernel never gives a port below the range to an outgoing connection, so only another
    listener can take one, and the probe sees those.
    """
    floor = ephemeral_port_floor()
    low = max(1024, floor - LOCAL_RDZV_PORTS)
    for _ in range(attempts):
        port = random.randrange(low, floor)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def visible_gpus() -> int:
    """NVIDIA GPUs on this machine, counted from the driver's /proc entries (no import)."""
    try:
        return len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return 0


SHELL_WIDTH = 80
"""``--dry-run`` breaks a command line before this column (the width of a terminal and
of a shell script's conventional line), between words, with a ``\\`` continuation."""


def shell_lines(words: list[str], width: int = SHELL_WIDTH) -> str:
    """Quoted shell ``words`` as one command over lines of at most ``width`` characters
    where no single word is longer (a shell reads the ``\\`` continuations as one line)."""
    lines: list[str] = []
    line = ""
    for word in words:
        indent = "    " if lines else ""
        if line and len(line) + 1 + len(word) + 2 > width:
            lines.append(line + " \\")
            line = "    " + word
        else:
            line = f"{line} {word}" if line else indent + word
    return "\n".join([*lines, line])


class LocalBackend(Backend):
    """Runs jobs on this machine. See the module docstring."""

    name = "local"

    def check(self, spec: JobSpec) -> None:
        gpus = visible_gpus()
        if spec.gpus_per_node > gpus:
            raise LaunchInputError(
                f"gpus_per_node is {spec.gpus_per_node} but this machine has {gpus} GPUs; "
                "lower it (0 for a CPU job) or use another backend"
            )

    def describe(self, request: SubmitRequest) -> str:
        spec = request.spec
        port = spec.local.rdzv_port or 0
        lines = [f"# local job {request.job_id}: {local_agent_count(spec)} node agent(s)"]
        for node in local_node_names(host_name(), local_agent_count(spec)):
            env = rank_environment(
                spec, request.job_id, request.job_dir.root, node, cpus_available()
            )
            argv = node_command(
                spec,
                request.job_dir.root,
                local_rendezvous(request.job_id, port),
                sys.executable,
                backend_grace_s=spec.local.stop_grace_s,
            )
            exports = [f"{k}={shlex.quote(v)}" for k, v in sorted(env.items())]
            lines.append(shell_lines([*exports, *(shlex.quote(word) for word in argv)]))
        if port == 0:
            lines.append("# port 0 stands for a free port picked when the job starts")
        return "\n".join(lines)

    def submit(self, request: SubmitRequest) -> str:
        """Start the detached supervisor; returns its pid."""
        root = request.job_dir.root
        env = {**os.environ, **request.secret_env, JOB_ID_ENV: request.job_id}
        argv = [
            sys.executable,
            "-m",
            SUPERVISOR_MODULE,
            "--detach",
            "--registry",
            str(request.registry_path),
            str(root),
        ]
        try:
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=str(request.spec.workdir or root),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
            )
            out, err = proc.communicate(timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackendUnavailableError(f"could not start the local supervisor: {exc}") from None
        pid_text = out.decode(errors="replace").strip()
        if proc.returncode != 0 or not pid_text.isdigit():
            detail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise BackendUnavailableError(
                f"the local supervisor failed to start (exit {proc.returncode}): {detail[0]}"
            )
        return pid_text

    def status(self, record: JobRecord) -> BackendStatus:
        if record.state.is_terminal:
            return BackendStatus(record.state, record.reason, record.exit_code)
        pid = _pid(record)
        if pid is not None and process_of_job(pid, record.id) is not None:
            return BackendStatus(record.state, record.reason, record.exit_code)
        finished = last_finished_event(JobDir(record.job_dir), record.id)
        if finished is not None:
            return BackendStatus(
                parse_state(str(finished.get("state", "UNKNOWN"))),
                str(finished.get("reason", "")),
                _int_or_none(finished.get("exit_code")),
            )
        if pid is None:
            if record.age_s() < 60:
                return BackendStatus(JobState.PENDING, "starting")
            return BackendStatus(JobState.FAILED, "the supervisor never started")
        leftovers = job_processes(record.id)
        if leftovers:
            return BackendStatus(
                JobState.UNKNOWN,
                f"supervisor (pid {pid}) is gone but {len(leftovers)} job processes run; "
                f"`scalectl cancel {record.id}` stops them",
            )
        return BackendStatus(
            JobState.FAILED, f"supervisor (pid {pid}) ended without recording an exit (killed?)"
        )

    def cancel(self, record: JobRecord, grace_s: float | None = None) -> CancelReport:
        grace = grace_s if grace_s is not None else _spec_grace_s(record)
        procs = job_processes(record.id)
        if not procs:
            return CancelReport(0, note="no process of the job was running")
        pid = _pid(record)
        supervisor = process_of_job(pid, record.id) if pid is not None else None
        if supervisor is not None:
            # The supervisor stops torchrun (which stops the ranks) within its own grace
            # period; we wait a little longer, then kill whatever is left.
            supervisor.send_signal(signal.SIGTERM)
            report = stop_processes(procs, grace + 5.0, term=False)
        else:
            report = _stop_without_supervisor(procs, grace)
        killed, survivors = report.killed, report.survivors
        # A rank restarting at the moment of the sweep may have escaped it.
        late = job_processes(record.id)
        if late:
            again = stop_processes(late, 1.0)
            killed += again.killed + again.exited_on_term
            survivors = again.survivors
        return CancelReport(signalled=len(procs), killed=killed, survivors=survivors)


def _stop_without_supervisor(procs: list[psutil.Process], grace_s: float) -> StopReport:
    """Stop a job whose supervisor is gone: SIGTERM to the node agents only where they
    still run (each forwards one SIGTERM through torchrun to each rank; a second would cut
    a trainer's checkpoint short), else to torchrun, else to every process; then SIGKILL
    what is left after the grace."""
    agents = [p for p in procs if _is_agent(p)]
    torchruns = [p for p in procs if _is_torchrun(p)]
    signal_processes(agents or torchruns or procs, signal.SIGTERM)
    return stop_processes(procs, grace_s, term=False)


def _is_agent(proc: psutil.Process) -> bool:
    try:
        cmdline = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return "agent" in cmdline and any(part.endswith("scalectl") for part in cmdline)


def _is_torchrun(proc: psutil.Process) -> bool:
    try:
        return "torch.distributed.run" in proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def last_finished_event(job_dir: JobDir, job_id: str) -> dict[str, object] | None:
    """The supervisor's ``finished`` (or ``failed``) event for this job, if written."""
    for event in reversed(tail_jsonl(job_dir.events, 200)):
        if event.get("job_id") == job_id and event.get("event") in (
            EventKind.FINISHED,
            EventKind.FAILED,
        ):
            return event
    return None


def _pid(record: JobRecord) -> int | None:
    value = record.backend_job_id
    return int(value) if value is not None and value.isdigit() else None


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _spec_grace_s(record: JobRecord) -> float:
    local = record.spec.get("local")
    value = local.get("stop_grace_s") if isinstance(local, dict) else None
    return float(value) if isinstance(value, int | float) else 30.0


def cpus_available() -> int:
    """CPUs this process may run on (affinity mask, not the machine total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
