"""``scalectl launch / jobs / logs / cancel / requeue``: the launcher's commands.

Only typer is imported at module level; everything else (pydantic, psutil, sqlite, rich)
inside the command functions, so ``scalectl --help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from launcher.progress_view import ProgressSnapshot
    from launcher.store import JobRecord, Store

_EXTRA_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}


def register(app: typer.Typer) -> None:
    """Add the launcher's commands to the root app."""
    app.command("launch", context_settings=_EXTRA_ARGS)(launch)
    app.command("jobs")(jobs)
    app.command("logs")(logs)
    app.command("cancel")(cancel)
    app.command("requeue")(requeue)
    app.command("manifests")(manifests)
    # `plan calibrate` reads job directories and the registry (the launcher's), then fits
    # with the planner: the planner may not import the launcher, so it is mounted from here.
    from launcher.cli_calibrate import calibrate_command
    from planner.cli import plan_app

    plan_app.command("calibrate")(calibrate_command)


def launch(
    ctx: typer.Context,
    backend: str | None = typer.Option(
        None, "--backend", "-b", help="local, slurm or kubernetes (default: local)."
    ),
    name: str | None = typer.Option(
        None, "--name", help="Job name (default: from the entrypoint)."
    ),
    nodes: str | None = typer.Option(None, "--nodes", help="Elastic node range MIN:MAX, or N."),
    nproc_per_node: int | None = typer.Option(
        None, "--nproc-per-node", "--procs-per-node", help="Ranks per node."
    ),
    gpus_per_node: int | None = typer.Option(None, "--gpus-per-node", help="GPUs per node."),
    cpus_per_node: int | None = typer.Option(None, "--cpus-per-node", help="CPUs per node."),
    mem_gib: float | None = typer.Option(None, "--mem-gib", help="Memory per node, GiB."),
    time_limit: str | None = typer.Option(
        None, "--time-limit", help="Wall-clock limit: 90m, 2h, 1:30:00, 1-00:00:00."
    ),
    module: str | None = typer.Option(
        None, "--module", "-m", help="Run a Python module (runtime.train: the reference trainer)."
    ),
    script: str | None = typer.Option(None, "--script", help="Run a Python script."),
    env: list[str] | None = typer.Option(
        None, "--env", "-e", help="NAME=VALUE, or NAME to pass this shell's value by reference."
    ),
    max_restarts: int | None = typer.Option(None, "--max-restarts", help="Restart budget."),
    ckpt_every: int | None = typer.Option(None, "--ckpt-every", help="Checkpoint every N steps."),
    keep_last: int | None = typer.Option(
        None, "--keep-last", help="Keep the newest K checkpoints."
    ),
    job_dir: str | None = typer.Option(None, "--job-dir", help="Job directory (reuse to resume)."),
    jobs_root: str | None = typer.Option(None, "--jobs-root", help="Where job directories go."),
    workdir: str | None = typer.Option(None, "--workdir", help="Working directory of the ranks."),
    local_nodes: int | None = typer.Option(
        None, "--local-nodes", help="local backend: node agents to start on this machine."
    ),
    follow: bool = typer.Option(False, "--follow", "-f", help="Follow the logs until it ends."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print what would be submitted; create nothing."
    ),
    after: list[str] | None = typer.Option(
        None, "--after", help="slurm: start once this job completed (id or name; repeatable)."
    ),
) -> None:
    """Launch a job from a spec file and/or flags: `scalectl launch job.yaml`,
    `scalectl launch --nodes 1:2 --nproc-per-node 2 -- python train.py --lr 1e-3`,
    `scalectl launch --module runtime.train -- --steps 50`."""
    from launcher import api
    from launcher.flags import LaunchFlags, build_mapping, split_words
    from launcher.spec import read_spec_mapping, spec_from_mapping
    from launcher.store import Store

    spec_file, words = split_words(list(ctx.args))
    flags = LaunchFlags(
        backend=backend,
        name=name,
        nodes=nodes,
        procs_per_node=nproc_per_node,
        gpus_per_node=gpus_per_node,
        cpus_per_node=cpus_per_node,
        mem_gib=mem_gib,
        time_limit=time_limit,
        module=module,
        script=script,
        env=list(env or []),
        max_restarts=max_restarts,
        ckpt_every=ckpt_every,
        keep_last=keep_last,
        job_dir=job_dir,
        jobs_root=jobs_root,
        workdir=workdir,
        local_nodes=local_nodes,
    )
    file_data = read_spec_mapping(spec_file) if spec_file is not None else None
    source = str(spec_file) if spec_file is not None else "launch flags"
    if after:
        from launcher.chain import resolve_after, with_after

        file_data = with_after(file_data, resolve_after(after))
    if file_data is not None and "sweep" in file_data:
        from launcher.sweep import sweep_command

        for line in sweep_command(file_data, flags, words, source=source, dry_run=dry_run):
            typer.echo(line)
        return
    spec = spec_from_mapping(build_mapping(file_data, flags, words), source=source)
    if after:
        from launcher.chain import check_after

        check_after(spec, after)
    if dry_run:
        typer.echo(api.dry_run(spec, cwd=Path.cwd(), environ=dict(_environ())))
        return
    with Store() as store:
        record = api.launch(spec, store)
        typer.echo(f"launched job {record.id} ({record.name}) on {record.backend}")
        typer.echo(f"  job dir: {record.job_dir}")
        if not follow:
            typer.echo(f"  follow:  scalectl logs {record.id} -f")
            typer.echo(f"  status:  scalectl jobs      cancel: scalectl cancel {record.id}")
            return
        final = _follow_logs(store, record, rank=None, node=None, last_lines=None)
    _print_final(final)
    raise typer.Exit(0 if final.state.value == "COMPLETED" else 1)


def jobs(
    state: list[str] | None = typer.Option(
        None, "--state", "-s", help="Only jobs in this state (repeatable)."
    ),
    backend: str | None = typer.Option(None, "--backend", "-b", help="Only this backend."),
    filter_text: str | None = typer.Option(
        None, "--filter", "-f", help="Substring of the id or name."
    ),
    active: bool = typer.Option(False, "--active", "-a", help="Only jobs that have not ended."),
    limit: int = typer.Option(20, "--limit", "-n", help="At most this many (newest first)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List jobs across backends, newest first, with state refreshed from the backend."""
    import json

    from launcher import api
    from launcher.errors import LaunchInputError
    from launcher.progress_view import read_progress
    from launcher.states import JobState
    from launcher.store import Store, registry_exists

    states = None
    if state:
        try:
            states = [JobState(s.strip().upper()) for s in state]
        except ValueError:
            known = ", ".join(s.value for s in JobState)
            raise LaunchInputError(f"--state {state!r}: choose from {known}") from None
    if not registry_exists():
        records: list[JobRecord] = []
    else:
        with Store() as store:
            records = store.list_jobs(
                states=states,
                backends=[backend] if backend else None,
                text=filter_text,
                active_only=active,
                limit=limit,
            )
            records = [api.refresh(store, r) for r in records]
    progress = {r.id: read_progress(r.job_dir) for r in records}
    if as_json:
        typer.echo(json.dumps([_job_json(r, progress[r.id]) for r in records], indent=2))
        return
    _print_jobs_table(records, progress)


def logs(
    job: str = typer.Argument(..., help="Job id, unique id prefix/suffix, or name."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until it ends."),
    rank: str | None = typer.Option(
        None, "--rank", "-r", help="Only this rank (or torchrun / supervisor)."
    ),
    node: str | None = typer.Option(None, "--node", help="Only this node."),
    lines: int | None = typer.Option(
        None, "--lines", "-n", help="Start this many lines from the end of each log."
    ),
) -> None:
    """Print a job's logs (every rank, prefixed by node.rank), optionally following them."""
    from launcher.store import Store

    with Store(create=False) as store:
        record = store.resolve(job)
        if follow:
            final = _follow_logs(store, record, rank=rank, node=node, last_lines=lines)
            _print_final(final)
            return
        _print_logs_once(record, rank=rank, node=node, last_lines=lines)


def cancel(
    job: str = typer.Argument(..., help="Job id, unique id prefix/suffix, or name."),
    grace_s: float | None = typer.Option(
        None, "--grace", help="Seconds between SIGTERM and SIGKILL (default: the spec's)."
    ),
) -> None:
    """Stop every process of a job (SIGTERM, SIGKILL after the grace period)."""
    from launcher import api
    from launcher.store import Store

    with Store(create=False) as store:
        record = store.resolve(job)
        outcome = api.cancel(store, record, grace_s)
    final = outcome.record
    if outcome.report is None:
        typer.echo(f"job {final.id} had already ended ({final.state.value}); nothing to cancel")
        return
    report = outcome.report
    detail = f"{report.signalled} process(es) stopped"
    if report.killed:
        detail += f", {report.killed} killed after the grace period"
    if report.note:
        detail = report.note
    typer.echo(f"cancelled job {final.id} ({final.name}): {detail}")
    if report.survivors:
        typer.echo(f"warning: {report.survivors} process(es) survived SIGKILL", err=True)
        raise typer.Exit(1)


def requeue(
    job: str = typer.Argument(..., help="Job id, unique id prefix/suffix, or name."),
) -> None:
    """Send a running Slurm job back to the queue: its ranks checkpoint, it is requeued
    (counted against slurm.max_requeues) and resumes from that checkpoint."""
    from launcher import api
    from launcher.store import Store

    with Store(create=False) as store:
        record = store.resolve(job)
        note = api.requeue(store, record)
    typer.echo(f"requeue of job {record.id} ({record.name}): {note}")


def manifests(
    spec_file: Path = typer.Argument(..., help="Job spec (YAML or JSON)."),
    output: Path = typer.Option(..., "--output", "-o", help="Directory to write into."),
    k8s_flavor: str | None = typer.Option(
        None,
        "--k8s-flavor",
        help="pytorchjob, jobset, indexed-job or all (default: the spec's kubernetes.flavor).",
    ),
    job_id: str | None = typer.Option(
        None, "--job-id", help="Job id to name the objects with (default: a new one)."
    ),
) -> None:
    """Write the Kubernetes manifests of a job spec as YAML, one file per flavour
    (`<flavor>.yaml`); nothing is submitted."""
    from launcher.errors import LaunchInputError
    from launcher.ids import is_job_id, new_job_id
    from launcher.render.k8s_files import flavors_from_option, write_manifests
    from launcher.spec import load_spec_file

    if job_id is not None and not is_job_id(job_id):
        raise LaunchInputError(f"--job-id {job_id!r}: write YYYYMMDD-HHMMSS-xxxx (4 hex digits)")
    spec = load_spec_file(spec_file, {"backend": "kubernetes"})
    flavors = flavors_from_option(k8s_flavor, spec)
    for path in write_manifests(spec, flavors, job_id or new_job_id(), output, str(spec_file)):
        typer.echo(f"wrote {path}")


# -- helpers ---------------------------------------------------------------------


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


def _log_source(record: JobRecord, rank: str | None, node: str | None) -> Any:
    from launcher.backends import get_backend
    from launcher.logs import select_logs

    backend = get_backend(record.backend)
    return lambda: select_logs(backend.log_files(record), rank, node)


def _print_logs_once(
    record: JobRecord, *, rank: str | None, node: str | None, last_lines: int | None
) -> None:
    from launcher.logs import LogFollower

    follower = LogFollower(_log_source(record, rank, node), last_lines=last_lines)
    _emit(follower.poll(flush=True), follower)


def _follow_logs(
    store: Store,
    record: JobRecord,
    *,
    rank: str | None,
    node: str | None,
    last_lines: int | None,
) -> JobRecord:
    from launcher import api
    from launcher.logs import LogFollower, follow

    latest = [record]

    def done() -> bool:
        latest[0] = api.refresh(store, store.get(record.id) or latest[0])
        return latest[0].state.is_terminal

    follower = LogFollower(_log_source(record, rank, node), last_lines=last_lines)
    try:
        for line in follow(follower, done):
            _emit([line], follower)
    except KeyboardInterrupt:
        typer.echo(f"\nstopped following; the job goes on (scalectl cancel {record.id})")
        raise typer.Exit(130) from None
    return latest[0]


def _emit(lines: list[Any], follower: Any) -> None:
    many = len(follower.offsets) > 1
    out = sys.stdout
    for line in lines:
        out.write(f"[{line.source.label}] {line.text}\n" if many else f"{line.text}\n")
    out.flush()


def _print_final(record: JobRecord) -> None:
    reason = f" ({record.reason})" if record.reason else ""
    typer.echo(f"job {record.id} {record.state.value}{reason}")


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def jobs_table_rows(
    records: list[JobRecord], progress: dict[str, ProgressSnapshot], now_s: float
) -> list[dict[str, str]]:
    """The jobs table as text cells (pure; the TUI shows the same columns)."""
    rows = []
    for record in records:
        snap = progress[record.id]
        shape = f"{record.nodes}×{record.procs_per_node}"
        if record.gpus_per_node:
            shape += f" ({record.gpus_per_node} GPU/node)"
        rows.append(
            {
                "ID": record.id,
                "NAME": record.name,
                "BACKEND": record.backend,
                "STATE": record.state.value,
                "REASON": record.reason,
                "NODES": shape,
                "STEP": _num(snap.step, "d"),
                "LOSS": _num(snap.loss, ".4g"),
                "TOK/S": _num(snap.tokens_per_s, ",.0f"),
                "AGE": _age(record.age_s(now_s)),
            }
        )
    return rows


def _print_jobs_table(records: list[JobRecord], progress: dict[str, ProgressSnapshot]) -> None:
    import time

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from launcher.states import STATE_STYLE

    console = Console()
    if not records:
        console.print("no jobs yet; `scalectl launch` starts one")
        return
    rows = jobs_table_rows(records, progress, time.time())
    fixed = ("ID", "BACKEND", "NODES", "STEP", "LOSS", "TOK/S", "AGE")
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in fixed}
    # Only NAME and STATE (with its reason) give way on a narrow terminal: rich crops
    # no_wrap columns from the right instead of shrinking them, so size them here.
    gaps = 2 * (len(fixed) + 1)
    spare = console.width - sum(widths.values()) - gaps
    longest_name = max(4, *(len(r["NAME"]) for r in rows))
    name_width = max(4, min(longest_name, 24, spare // 3))
    state_width = max(9, spare - name_width)
    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 2, 0, 0))
    table.add_column("ID", no_wrap=True)
    table.add_column("NAME", no_wrap=True, overflow="ellipsis", max_width=name_width)
    table.add_column("BACKEND", no_wrap=True)
    table.add_column("STATE", no_wrap=True, overflow="ellipsis", max_width=state_width)
    for column in ("NODES", "STEP", "LOSS", "TOK/S", "AGE"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        state = Text(row["STATE"], style=STATE_STYLE.get(row["STATE"], ""))
        if row["REASON"]:
            state.append(f" {row['REASON']}", style="dim")
        table.add_row(
            row["ID"],
            row["NAME"],
            row["BACKEND"],
            state,
            *(row[c] for c in ("NODES", "STEP", "LOSS", "TOK/S", "AGE")),
        )
    console.print(table)


def _job_json(record: JobRecord, snap: ProgressSnapshot) -> dict[str, Any]:
    from dataclasses import asdict

    return {
        "id": record.id,
        "name": record.name,
        "backend": record.backend,
        "backend_job_id": record.backend_job_id,
        "state": record.state.value,
        "reason": record.reason,
        "job_dir": str(record.job_dir),
        "nodes": record.nodes,
        "procs_per_node": record.procs_per_node,
        "gpus_per_node": record.gpus_per_node,
        "created_ts": record.created_ts,
        "updated_ts": record.updated_ts,
        "started_ts": record.started_ts,
        "ended_ts": record.ended_ts,
        "exit_code": record.exit_code,
        "progress": asdict(snap),
    }
