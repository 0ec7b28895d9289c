"""The flavour registry: every flavour is one class behind one interface, and a new one
needs only its class and a registry entry (plus its name in the spec's Literal)."""

from __future__ import annotations

import typing

import pytest
from k8s_specs import JOB_ID, make_spec

from launcher.backends.k8s_api import RESOURCES
from launcher.backends.k8s_state import job_status
from launcher.backends.kubernetes import Handle
from launcher.render import flavours
from launcher.render.flavours.base import Flavour
from launcher.render.flavours.indexed_job import IndexedJob
from launcher.render.k8s import make_target, render
from launcher.render.k8s_names import LABEL_MAX
from launcher.spec import KubernetesOptions
from launcher.states import JobState


def test_the_spec_accepts_exactly_the_registered_flavours() -> None:
    annotation = KubernetesOptions.model_fields["flavor"].annotation
    assert set(typing.get_args(annotation)) == set(flavours.FLAVOURS)
    assert flavours.FLAVORS[0] == KubernetesOptions().flavor


@pytest.mark.parametrize("name", list(flavours.FLAVOURS))
def test_each_flavour_owns_its_pods_and_knows_its_api(name: str) -> None:
    flavour = flavours.FLAVOURS[name]
    assert isinstance(flavour, Flavour) and flavour.name == name
    owner = render(make_spec(), JOB_ID, name)[-1]
    assert (owner["apiVersion"], owner["kind"]) == (
        flavour.resource.api_version,
        flavour.resource.kind,
    )
    assert RESOURCES[(owner["apiVersion"], owner["kind"])] == flavour.resource
    target = make_target(make_spec(nodes="1:1000"), JOB_ID, name)
    assert len(target.name) <= flavour.name_budget(1000) <= LABEL_MAX
    assert target.rdzv_endpoint.startswith(flavour.rdzv_host(target.name) + ":")


class PodGroup(IndexedJob):
    """A made-up flavour: an Indexed Job under another name and success condition."""

    name = "pod-group"
    success_condition = "AllDone"


def test_a_new_flavour_is_one_class_and_one_registry_entry(monkeypatch) -> None:
    monkeypatch.setitem(flavours.FLAVOURS, PodGroup.name, PodGroup())
    objects = render(make_spec(), JOB_ID, "pod-group")
    assert objects[-1]["metadata"]["labels"]["scalectl.dev/flavor"] == "pod-group"
    assert Handle.parse(f"pod-group/ns/{objects[-1]['metadata']['name']}").owner.kind == "Job"
    done = {"status": {"conditions": [{"type": "AllDone", "status": "True"}]}}
    status = job_status("pod-group", "x", done, [], expected_pods=1)
    assert status.state is JobState.COMPLETED
    assert job_status("indexed-job", "x", done, [], expected_pods=1).state is not (
        JobState.COMPLETED
    )
