"""Container environment for Kubernetes pods: plain values inline, secrets only by reference.

Rules (pure; every refusal is one line naming the variable and the fix):

* ``{secret: NAME, key: KEY}`` becomes ``valueFrom.secretKeyRef {name: NAME, key: KEY}``.
* ``{from_env: VAR}`` cannot be honoured as such: the value lives in the submitting
  shell and must never be written into a manifest. With ``kubernetes.env_secret: S`` it
  becomes ``secretKeyRef {name: S, key: VAR}`` (create the Secret once, e.g.
  ``kubectl create secret generic S --from-literal=VAR="$VAR"``); without it the entry
  is refused.
* A plain value is refused when it looks like a secret: its name's last ``_`` word is
  TOKEN, KEY, APIKEY, SECRET, PASSWORD, PASSWD, PASSPHRASE, CREDENTIAL(S) or PAT, or a
  word of it is PASSWORD, PASSWD or SECRET (``HF_TOKEN``, ``WANDB_API_KEY``,
  ``AWS_SECRET_ACCESS_KEY``, ``DB_PASSWORD``), or its value has the shape of a
  well-known credential (Hugging Face ``hf_...``, GitHub ``ghp_...``/``github_pat_...``,
  OpenAI-style ``sk-...``, AWS ``AKIA...``, Slack ``xox?-...``, a PEM private key).
  Manifests are files people print, commit and share.
"""

from __future__ import annotations

import re
from typing import Any

from launcher.errors import LaunchInputError
from launcher.render.k8s_names import check_config_key, check_subdomain
from launcher.spec import FromEnv, JobSpec, SecretRef

_SECRET_LAST_WORDS = frozenset(
    {
        "TOKEN",
        "KEY",
        "APIKEY",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "PASSPHRASE",
        "CREDENTIAL",
        "CREDENTIALS",
        "PAT",
    }
)
_SECRET_ANY_WORDS = frozenset({"PASSWORD", "PASSWD", "SECRET"})
_SECRET_VALUE_SHAPES = (
    re.compile(r"^hf_[A-Za-z0-9]{20,}$"),
    re.compile(r"^gh[pousr]_[A-Za-z0-9]{20,}$"),
    re.compile(r"^github_pat_[A-Za-z0-9_]{20,}$"),
    re.compile(r"^sk-[A-Za-z0-9_-]{20,}$"),
    re.compile(r"^(AKIA|ASIA)[0-9A-Z]{16}$"),
    re.compile(r"^xox[abposr]-[A-Za-z0-9-]{10,}$"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
)


def looks_like_secret_name(name: str) -> bool:
    """True for variable names that conventionally hold credentials (module doc)."""
    words = [w for w in name.upper().split("_") if w]
    if not words:
        return False
    return words[-1] in _SECRET_LAST_WORDS or any(w in _SECRET_ANY_WORDS for w in words)


def looks_like_secret_value(value: str) -> bool:
    """True for values shaped like a well-known credential (module doc)."""
    text = value.strip()
    return any(shape.search(text) for shape in _SECRET_VALUE_SHAPES)


def check_plain_env(spec: JobSpec) -> None:
    """Refuse plain env values that look like secrets (see module doc)."""
    for name, value in spec.env_plain().items():
        if looks_like_secret_name(name) or looks_like_secret_value(value):
            raise LaunchInputError(
                f"env.{name} looks like a secret and would be written into the manifest "
                f"in plain text; store it in a Kubernetes Secret and write "
                f"env: {{{name}: {{secret: SECRET_NAME, key: KEY}}}}"
            )


def secret_ref(name: str, ref: FromEnv | SecretRef, env_secret: str | None) -> dict[str, Any]:
    """The ``secretKeyRef`` for one reference entry (module doc), checked."""
    if isinstance(ref, SecretRef):
        secret = check_subdomain(ref.secret, f"env.{name}.secret")
        key = check_config_key(ref.key, f"env.{name}.key")
    else:
        if env_secret is None:
            raise LaunchInputError(
                f"env.{name}: {{from_env: {ref.from_env}}} would need the value from this "
                "shell, which is never written into a manifest; put it in a Secret and "
                f"write {{secret: SECRET_NAME, key: {ref.from_env}}}, or set "
                "kubernetes.env_secret to a Secret holding a key per from_env variable"
            )
        secret = check_subdomain(env_secret, "kubernetes.env_secret")
        key = check_config_key(ref.from_env, f"env.{name}.from_env")
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def reference_entries(spec: JobSpec) -> list[dict[str, Any]]:
    """Env entries for every reference in the spec, in name order."""
    refs = spec.env_refs()
    return [secret_ref(name, refs[name], spec.kubernetes.env_secret) for name in sorted(refs)]


def plain_entries(values: dict[str, str]) -> list[dict[str, Any]]:
    """``{name, value}`` entries, in the mapping's order."""
    return [{"name": key, "value": value} for key, value in values.items()]


def field_entry(name: str, field_path: str) -> dict[str, Any]:
    """An entry filled from the pod's own fields (downward API)."""
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": field_path}}}
