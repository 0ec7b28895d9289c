"""Feed ``plan export``'s output for the test layouts to the frameworks' own parsers.

The unit tests check every exported name against recorded field names; this goes further
where the frameworks' sources are at hand: torchtitan 0.3's overrides go through tyro
into its ``Trainer.Config`` (whose ``__post_init__`` checks them), the TOML through
torchtitan 0.2's ``ConfigManager`` (``--job.config_file``; run it in a second process,
torchtitan 0.2 on the path instead of 0.3), Megatron-LM's arguments through its
``parse_args`` and ``validate_args``. Needs torch (this repository's venv) and,
on extra paths, the frameworks and their light dependencies (no GPU: Megatron's device
generation is taken as Hopper's)::

    pip download torchtitan==0.3.0 --no-deps && unzip torchtitan-0.3.0-*.whl -d /tmp/tt
    pip install --target /tmp/ttdeps tyro spmd_types torchdata tensorboard datasets
    pip install --target /tmp/mc 'megatron-core==0.16.1' --no-deps   # and six, triton, …
    python scripts/check_exports.py --torchtitan /tmp/tt --megatron-lm ~/Megatron-LM \\
        --path /tmp/ttdeps --path /tmp/mc
    git -C torchtitan archive v0.2.2 torchtitan | tar -x -C /tmp/tt22
    python scripts/check_exports.py --torchtitan-toml /tmp/tt22 --path /tmp/ttdeps

It prints one line per layout and exits 1 if a framework refused one.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def check_torchtitan(layouts: list[dict[str, Any]]) -> int:
    import tyro
    from torchtitan.config.manager import custom_registry
    from torchtitan.trainer import Trainer

    from planner.export_torchtitan import torchtitan_overrides
    from tests.planner.export_fixtures import export_of

    failed = 0
    for layout in layouts:
        words = torchtitan_overrides(export_of(**layout), compile_model=True)
        try:
            config = tyro.cli(
                Trainer.Config, args=words, default=Trainer.Config(), registry=custom_registry
            )
        except SystemExit:
            failed += 1
            print(f"torchtitan REFUSED {layout}")
            continue
        par = config.parallelism
        print(
            f"torchtitan ok {layout}: replicate {par.data_parallel_replicate_degree} shard "
            f"{par.data_parallel_shard_degree} tp {par.tensor_parallel_degree} pp "
            f"{par.pipeline_parallel_degree} {par.pipeline_parallel_schedule} local batch "
            f"{config.training.local_batch_size}"
        )
    return failed


def check_torchtitan_toml(layouts: list[dict[str, Any]]) -> int:
    import tempfile

    from torchtitan.config.manager import ConfigManager

    from planner.export_torchtitan import torchtitan_toml
    from tests.planner.export_fixtures import export_of

    failed = 0
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "plan.toml"
        for layout in layouts:
            for precision in ("bf16", "fp8"):
                training = {**layout.get("training", {}), "precision": precision}
                export = export_of(**{**layout, "training": training})
                path.write_text(torchtitan_toml(export, compile_model=True), encoding="utf-8")
                try:
                    config = ConfigManager().parse_args(["--job.config_file", str(path)])
                except SystemExit:
                    failed += 1
                    print(f"torchtitan 0.2 REFUSED {layout} {precision}")
                    continue
                par = config.parallelism
                print(
                    f"torchtitan 0.2 ok {layout} {precision}: shard "
                    f"{par.data_parallel_shard_degree} pp {par.pipeline_parallel_degree} "
                    f"{par.pipeline_parallel_schedule} converters {config.model.converters}"
                )
    return failed


def check_megatron(layouts: list[dict[str, Any]]) -> int:
    import megatron.training.arguments as arguments

    from planner.export_megatron import megatron_arguments
    from tests.planner.export_fixtures import export_of

    arguments.get_device_arch_version = lambda: 9
    failed = 0
    for layout in layouts:
        export = export_of(**layout)
        args = megatron_arguments(export)
        os.environ.update(WORLD_SIZE=str(export.resolved.world_size), RANK="0")
        # The launch environment Megatron-LM asserts (set by its example scripts).
        fsdp = "--use-megatron-fsdp" in args
        os.environ["CUDA_DEVICE_MAX_CONNECTIONS"] = "8" if fsdp else "1"
        sys.argv = ["pretrain_gpt.py", *args, "--lr", "1e-4", "--mock-data"]
        sys.argv += ["--tokenizer-type", "NullTokenizer"]
        try:
            namespace = arguments.parse_args(ignore_unknown_args=False)
            arguments.validate_args(namespace, {})
        except (AssertionError, SystemExit, ValueError) as exc:
            failed += 1
            print(f"megatron REFUSED {layout}: {exc}")
            continue
        print(
            f"megatron ok {layout}: dp {namespace.data_parallel_size} vpp "
            f"{namespace.virtual_pipeline_model_parallel_size}"
        )
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torchtitan", type=Path, help="an unpacked torchtitan 0.3 wheel")
    parser.add_argument("--torchtitan-toml", type=Path, help="torchtitan 0.2's source tree")
    parser.add_argument("--megatron-lm", type=Path, help="a Megatron-LM core_v0.16 checkout")
    parser.add_argument("--path", type=Path, action="append", default=[], help="extra sys.path")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    trees = (args.torchtitan, args.torchtitan_toml, args.megatron_lm)
    sys.path[:0] = [str(ROOT)] + [str(p) for p in trees if p]
    sys.path += [str(p) for p in args.path]
    from tests.planner import test_export_megatron, test_export_torchtitan

    failed = 0
    if args.torchtitan:
        failed += check_torchtitan(test_export_torchtitan.LAYOUTS)
    if args.torchtitan_toml:
        failed += check_torchtitan_toml(test_export_torchtitan.LAYOUTS)
    if args.megatron_lm:
        failed += check_megatron(test_export_megatron.LAYOUTS)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
