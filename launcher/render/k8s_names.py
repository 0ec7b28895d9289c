"""Kubernetes names and label syntax: normalise what we name, refuse what the user named.

Names scalectl makes up (the objects of a job) are *normalised*: lowercased, every run
of characters outside ``[a-z0-9]`` becomes one ``-``, a leading digit gets a ``j-``
prefix (RFC 1035 labels, which PyTorchJob, JobSet and Service names must be, start with
a letter), and a name over its length budget is cut and given a hash suffix of the
original text, so two long names that share a prefix still differ and the same input
always gives the same name.

Names the user gives that refer to things that already exist (a PVC, a Secret, a
namespace, a queue) cannot be renamed by us: they are checked and refused with a line
naming the field and the rule.

Syntax rules: Kubernetes ``k8s.io/apimachinery/pkg/util/validation`` (IsDNS1123Label,
IsDNS1123Subdomain, IsDNS1035Label, IsQualifiedName, IsValidLabelValue,
IsConfigMapKey).
"""

from __future__ import annotations

import hashlib
import re

from launcher.errors import LaunchInputError

LABEL_MAX = 63
"""Longest DNS-1123 / DNS-1035 label and label value."""
SUBDOMAIN_MAX = 253
"""Longest DNS-1123 subdomain (Secret, PVC, ConfigMap, ServiceAccount names)."""
HASH_CHARS = 6
"""Hex digits of the suffix that replaces the cut-off tail of a too-long name."""
_MIN_BUDGET = 1 + 1 + HASH_CHARS
"""Shortest budget a name can be cut to: one letter, ``-``, the hash."""

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?\Z")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?\Z")
_QUALIFIED_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?\Z")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+\Z")
_INVALID_RUN = re.compile(r"[^a-z0-9]+")


def normalise_label(text: str, max_len: int = LABEL_MAX, *, what: str = "name") -> str:
    """``text`` as an RFC 1035 label of at most ``max_len`` characters (see module doc).

    Raises LaunchInputError when ``text`` has no letter or digit at all, or when the
    budget is too small to hold even a cut name.
    """
    if max_len < _MIN_BUDGET:
        raise LaunchInputError(
            f"{what}: only {max_len} characters are left for the name after the parts "
            "Kubernetes adds; use fewer nodes or a shorter name"
        )
    cleaned = _INVALID_RUN.sub("-", text.lower()).strip("-")
    if not cleaned:
        raise LaunchInputError(
            f"{what} {text!r} has no letter or digit to build a Kubernetes name from; "
            "use a name with letters or digits"
        )
    if not cleaned[0].isalpha():
        cleaned = f"j-{cleaned}"
    if len(cleaned) > max_len:
        digest = hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]
        cleaned = f"{cleaned[: max_len - HASH_CHARS - 1].rstrip('-')}-{digest}"
    assert is_dns1035_label(cleaned) and len(cleaned) <= max_len, cleaned
    return cleaned


def object_name(job_name: str, job_id: str, max_len: int = LABEL_MAX) -> str:
    """``<normalised job name>-<job id>``, within ``max_len``; the name part is what is cut.

    The job id keeps two jobs of the same name apart and shows in ``kubectl get``.
    """
    suffix = job_id.lower()
    if not is_dns1123_label(suffix):
        raise LaunchInputError(f"job id {job_id!r} is not a valid Kubernetes name part")
    base = normalise_label(job_name, max_len - len(suffix) - 1, what=f"name {job_name!r}")
    return f"{base}-{suffix}"


def label_value(text: str) -> str:
    """``text`` made a valid label value (at most 63, alphanumeric at both ends)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:LABEL_MAX]
    cleaned = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", cleaned)
    return cleaned


def is_dns1123_label(value: str) -> bool:
    return len(value) <= LABEL_MAX and bool(_DNS1123_LABEL.match(value))


def is_dns1035_label(value: str) -> bool:
    return len(value) <= LABEL_MAX and bool(_DNS1035_LABEL.match(value))


def is_subdomain(value: str) -> bool:
    return len(value) <= SUBDOMAIN_MAX and bool(_SUBDOMAIN.match(value))


def is_label_value(value: str) -> bool:
    return len(value) <= LABEL_MAX and bool(_LABEL_VALUE.match(value))


def is_qualified_name(value: str) -> bool:
    """A label or annotation key: ``[prefix/]name``, prefix a subdomain, name <= 63."""
    prefix, slash, name = value.rpartition("/")
    if slash and not (prefix and is_subdomain(prefix)):
        return False
    return len(name) <= LABEL_MAX and bool(_QUALIFIED_NAME.match(name))


def _checked(ok: bool, value: str, field: str, rule: str) -> str:
    """``value`` when ``ok``; else one LaunchInputError line: the field, the value, the rule."""
    if not ok:
        raise LaunchInputError(f"{field} {value!r} {rule}")
    return value


_DNS1123_LABEL_RULE = (
    "is not a valid Kubernetes name: use at most 63 lowercase "
    "letters, digits or '-', starting and ending with a letter or digit"
)
_SUBDOMAIN_RULE = (
    "is not a valid Kubernetes object name: use lowercase "
    "letters, digits, '-' and '.', starting and ending with a letter or digit "
    "(at most 253)"
)
_LABEL_VALUE_RULE = (
    "is not a valid label value: use at most 63 letters, "
    "digits, '-', '_' or '.', starting and ending with a letter or digit"
)
_QUALIFIED_NAME_RULE = (
    "is not a valid label key: write [PREFIX/]NAME with a DNS "
    "prefix and a NAME of at most 63 letters, digits, '-', '_' or '.'"
)
_CONFIG_KEY_RULE = "is not a valid Secret key: use letters, digits, '-', '_' or '.'"


def check_dns1123_label(value: str, field: str) -> str:
    return _checked(is_dns1123_label(value), value, field, _DNS1123_LABEL_RULE)


def check_subdomain(value: str, field: str) -> str:
    return _checked(is_subdomain(value), value, field, _SUBDOMAIN_RULE)


def check_label_value(value: str, field: str) -> str:
    return _checked(is_label_value(value), value, field, _LABEL_VALUE_RULE)


def check_qualified_name(value: str, field: str) -> str:
    return _checked(is_qualified_name(value), value, field, _QUALIFIED_NAME_RULE)


def check_config_key(value: str, field: str) -> str:
    ok = len(value) <= SUBDOMAIN_MAX and bool(_CONFIG_KEY.match(value))
    return _checked(ok, value, field, _CONFIG_KEY_RULE)


def check_absolute_path(value: str, field: str) -> str:
    parts = value.split("/")
    if not value.startswith("/") or ".." in parts or any(c in value for c in ":\n\r\x00"):
        raise LaunchInputError(
            f"{field} {value!r} must be an absolute path inside the container, without "
            "'..', ':' or line breaks"
        )
    return value


def check_image(value: str | None, field: str = "kubernetes.image") -> str:
    if value is None or not value.strip():
        raise LaunchInputError(
            f"{field} is required on the kubernetes backend: give the container image "
            "holding scalectl and your training code (e.g. ghcr.io/org/train:1.0)"
        )
    if any(c.isspace() or ord(c) < 32 for c in value):
        raise LaunchInputError(f"{field} {value!r} contains whitespace; write an image reference")
    return value
