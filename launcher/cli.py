"""``scalectl launch / jobs / logs / cancel / requeue / manifests``: the launcher's commands.

Imported by ``scalectl --help``, which must stay fast (bench/cli_startup.py): what pulls
in pydantic (``launcher.api``, ``launcher.spec``, ``launcher.sweep``, the manifest
writer, ``launcher.cli_follow``) is imported inside the command that needs it; the
registry, flags and table modules are standard library only and imported here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from launcher.chain import check_after, resolve_after, with_after
from launcher.cli_table import job_json, print_jobs_table
from launcher.errors import LaunchInputError
from launcher.flags import LaunchFlags, build_mapping, split_words
from launcher.ids import is_job_id, new_job_id
from launcher.progress_view import read_progress
from launcher.states import JobState
from launcher.store import JobRecord, Store, registry_exists

_EXTRA_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}


def register(app: typer.Typer) -> None:
    """Add the launcher's commands to the root app."""
    app.command("launch", context_settings=_EXTRA_ARGS)(launch)
    app.command("jobs")(jobs)
    app.command("logs")(logs)
    app.command("cancel")(cancel)
    app.command("requeue")(requeue)
    app.command("manifests")(manifests)
    from launcher.cli_export import export

    app.command("export")(export)
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
    max_restarts: int | None = typer.Option(
        None,
        "--max-restarts",
        help="Restart budget (default: 3 for the reference trainer, which resumes from its "
        "checkpoints; 0 for other programs).",
    ),
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
    as_json: bool = typer.Option(
        False, "--json", help="With --dry-run: print it as one JSON object (spec, job id, script)."
    ),
    after: list[str] | None = typer.Option(
        None, "--after", help="slurm: start once this job completed (id or name; repeatable)."
    ),
    plan_file: str | None = typer.Option(
        None,
        "--plan",
        help="A planner plan.json: nodes, ranks and layout from it; the reference trainer "
        "unless --module/--script or a command is given.",
    ),
    framework: str | None = typer.Option(
        None,
        "--framework",
        help="With --plan: torchtitan or megatron; the plan, exported for it, follows the "
        "entrypoint given after --.",
    ),
) -> None:
    """Launch a job from a spec file and/or flags: `scalectl launch job.yaml`,
    `scalectl launch --nodes 1:2 --nproc-per-node 2 -- python train.py --lr 1e-3`,
    `scalectl launch --module runtime.train -- --steps 50`,
    `scalectl launch --plan plan.json -- --steps 50`,
    `scalectl launch --plan plan.json --framework torchtitan -- python -m torchtitan.train …`."""
    from launcher import api
    from launcher.cli_follow import follow_logs, print_final
    from launcher.spec import read_spec_mapping, spec_from_mapping

    if as_json and not dry_run:
        raise LaunchInputError("--json: prints what --dry-run would submit; add --dry-run")
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
        file_data = with_after(file_data, resolve_after(after))
    if file_data is not None and "sweep" in file_data:
        from launcher.sweep import sweep_command

        if as_json:
            raise LaunchInputError("--json: not for a sweep; --dry-run alone prints its script")

        for line in sweep_command(file_data, flags, words, source=source, dry_run=dry_run):
            typer.echo(line)
        return
    plan_lines = None
    if framework is not None and plan_file is None:
        raise LaunchInputError(f"--framework {framework}: needs --plan plan.json")
    if plan_file is not None:
        from launcher.plan_launch import plan_job

        planned = plan_job(Path(plan_file), flags, words, file_data, source, framework)
        spec, plan_lines = planned.spec, planned.text
    else:
        spec = spec_from_mapping(build_mapping(file_data, flags, words), source=source)
    if after:
        check_after(spec, after)
    if dry_run:
        described = api.dry_run_json(spec, cwd=Path.cwd(), environ=dict(_environ()))
        if as_json:
            typer.echo(json.dumps({**described, "plan": plan_lines}, indent=2))
            return
        if plan_lines is not None:
            typer.echo(plan_lines)
        typer.echo(described["submit"])
        return
    with Store() as store:
        record = api.launch(spec, store)
        typer.echo(f"launched job {record.id} ({record.name}) on {record.backend}")
        typer.echo(f"  job dir: {record.job_dir}")
        if not follow:
            typer.echo(f"  follow:  scalectl logs {record.id} -f")
            typer.echo(f"  status:  scalectl jobs      cancel: scalectl cancel {record.id}")
            return
        final = follow_logs(store, record, rank=None, node=None, last_lines=None)
    print_final(final)
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
    from launcher import api

    states = None
    if state:
        known = {s.value: s for s in JobState}
        bad = [s for s in state if s.strip().upper() not in known]
        if bad:
            raise LaunchInputError(f"--state {bad[0]}: choose from {', '.join(known)}")
        states = [known[s.strip().upper()] for s in state]
    filters = [
        *(f"--state {s}" for s in state or ()),
        *([f"--backend {backend}"] if backend else []),
        *([f"--filter {filter_text}"] if filter_text else []),
        *(["--active"] if active else []),
    ]
    any_jobs = False
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
            any_jobs = bool(records) or bool(store.list_jobs(limit=1))
    progress = {r.id: read_progress(r.job_dir) for r in records}
    if as_json:
        typer.echo(json.dumps([job_json(r, progress[r.id]) for r in records], indent=2))
        return
    if not records and any_jobs:
        typer.echo(f"no job matches {' '.join(filters)}; `scalectl jobs` lists every job")
        return
    print_jobs_table(records, progress)


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
    from launcher.cli_follow import follow_logs, print_final, print_logs_once

    with Store(create=False) as store:
        record = store.resolve(job)
        if follow:
            final = follow_logs(store, record, rank=rank, node=node, last_lines=lines)
            print_final(final)
            return
        print_logs_once(record, rank=rank, node=node, last_lines=lines)


def cancel(
    job: str = typer.Argument(..., help="Job id, unique id prefix/suffix, or name."),
    grace_s: float | None = typer.Option(
        None, "--grace", help="Seconds between SIGTERM and SIGKILL (default: the spec's)."
    ),
) -> None:
    """Stop every process of a job (SIGTERM, SIGKILL after the grace period)."""
    from launcher import api

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
    return dict(os.environ)
