"""The registry of backend policies (``runtime.agent.policy``): a new backend is one
module with its policy class, its name in ``policy.POLICIES`` (what ``--policy`` accepts)
and one line here."""

from __future__ import annotations

import os
from collections.abc import Mapping

from runtime.agent.config import AgentConfig
from runtime.agent.policy import BackendPolicy, KubernetesPolicy, LocalPolicy
from runtime.agent.slurm_policy import SlurmPolicy

POLICY_CLASSES: dict[str, type[BackendPolicy]] = {
    "local": LocalPolicy,
    "slurm": SlurmPolicy,
    "kubernetes": KubernetesPolicy,
}


def choose_policy(cfg: AgentConfig, environ: Mapping[str, str] | None = None) -> BackendPolicy:
    """The policy named by ``cfg.policy``; ``auto`` reads the environment."""
    env = os.environ if environ is None else environ
    name = cfg.policy
    if name == "auto":
        name = "kubernetes" if env.get("KUBERNETES_SERVICE_HOST") else "local"
    return POLICY_CLASSES[name](cfg, env)
