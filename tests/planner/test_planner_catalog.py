"""Catalogs: every entry loads, matches validation/public.yaml, cites a source, and a
typo gets close matches."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

import planner
from planner.errors import PlanInputError

DATA = Path(planner.__file__).resolve().parent / "data"
PUBLIC = Path(__file__).resolve().parents[1] / "validation" / "public.yaml"
REQUIRED_GPUS = [
    "A100-SXM-40GB",
    "A100-SXM-80GB",
    "H100-SXM-80GB",
    "H100-PCIe",
    "H200-SXM-141GB",
    "B200",
    "L40S",
    "MI300X",
]
REQUIRED_MODELS = [
    "llama2-7b",
    "llama2-13b",
    "llama2-70b",
    "llama3-8b",
    "llama3-70b",
    "llama3-405b",
    "gpt3-175b",
    "mixtral-8x7b",
    "megatron-1t",
    "megatron-22b",
]


@pytest.mark.parametrize("name", REQUIRED_GPUS)
def test_required_gpus(name: str) -> None:
    assert planner.get_gpu(name).bf16_dense_tflops > 0


@pytest.mark.parametrize("name", REQUIRED_MODELS)
def test_required_presets(name: str) -> None:
    assert planner.get_model(name).num_params > 0


def test_catalog_agrees_with_public_hardware_facts() -> None:
    facts = yaml.safe_load(PUBLIC.read_text())["hardware"]
    names = {"nvlink_gb_s_per_dir": "intra_node_gb_s", "ib_gb_s_per_gpu": "inter_node_gb_s_per_gpu"}
    for gpu, values in facts.items():
        spec = planner.get_gpu(gpu)
        for key, value in values.items():
            assert getattr(spec, names.get(key, key)) == value, (gpu, key)


@pytest.mark.parametrize("file", ["gpus.yaml", "constants.yaml"])
def test_every_number_cites_a_source(file: str) -> None:
    """A line setting a number carries a comment (its source or a [tag] defined in the file)."""
    number = re.compile(r"^\s*-?\s*[a-z0-9_]+:\s*-?[0-9.][0-9.e+-]*\s*(#.*)?$")
    missing = [
        line
        for line in (DATA / file).read_text().splitlines()
        if number.match(line) and "#" not in line
    ]
    assert not missing, f"{file}: numbers without a source comment: {missing}"


def test_unknown_names_suggest_close_matches() -> None:
    with pytest.raises(PlanInputError, match=r"unknown GPU 'H10'; did you mean .*H100"):
        planner.get_gpu("H10")
    with pytest.raises(
        PlanInputError, match=r"unknown model preset 'llama3-7b'; did you mean .*llama3-8b"
    ):
        planner.get_model("llama3-7b")


def test_aliases_and_case() -> None:
    assert planner.get_gpu("h100").name == "H100-SXM-80GB"
    assert planner.get_gpu("B200-HGX-192GB").name == "B200-SXM-192GB"
    assert planner.get_model("LLAMA2-7B").name == "llama2-7b"


def test_gpu_spec_file(tmp_path: Path) -> None:
    spec = tmp_path / "cpu.yaml"
    spec.write_text(
        "name: this-cpu\nbf16_dense_tflops: 1.2\nhbm_gib: 32\nhbm_tb_s: 0.05\n"
        "intra_node_gb_s: 10\ninter_node_gb_s_per_gpu: 1\ntdp_w: 65\nidle_w: 5\n"
        "price_usd_per_gpu_hour: 0\n"
    )
    assert planner.load_gpu_spec(str(spec)).name == "this-cpu"
    with pytest.raises(PlanInputError, match="no such file"):
        planner.load_gpu_spec(str(tmp_path / "missing.yaml"))
