"""The contract is spelled in one place: no ``SCALECTL_*`` name and no event-kind string
outside contract/ in product code, and every writer's fields are documented there.

The scan reads each module's syntax tree, so comments and docstrings may name a variable
or a kind for people; code must import ``contract.env``'s constant or use
``contract.events.EventKind``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from contract.events import EVENT_FIELDS, EventKind

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("planner", "launcher", "runtime", "tui", "scalectl", "scripts")
KINDS = frozenset(kind.value for kind in EventKind)
WRITERS = frozenset({"append_event", "event", "event_record", "_last"})
"""Callees whose positional string arguments are event kinds."""
COMMON_FIELDS = frozenset({"source", "job_id", "node", "rank"})
"""Fields a writer's wrapper may add to any kind (who wrote it, and where)."""


def product_files() -> Iterator[Path]:
    for package in PRODUCT:
        yield from sorted((ROOT / package).rglob("*.py"))


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of string constants that are documentation (statement-level strings)."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }


def _callee(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _strings(node: ast.AST) -> Iterator[ast.Constant]:
    """String constants of ``node`` itself or of a tuple/list/set literal it is."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node
    elif isinstance(node, ast.Tuple | ast.List | ast.Set):
        for element in node.elts:
            yield from _strings(element)


def _about_events(node: ast.AST) -> bool:
    text = ast.unparse(node)
    return "event" in text or text == "kind"


def kind_literals(tree: ast.AST) -> Iterator[ast.Constant]:
    """Event-kind strings where code writes, compares or looks up an event kind."""
    for node in ast.walk(tree):
        found: list[ast.Constant] = []
        if isinstance(node, ast.Call) and _callee(node) in WRITERS:
            for arg in node.args:
                found += _strings(arg)
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(_about_events(o) for o in operands):
                for operand in operands:
                    found += _strings(operand)
        elif isinstance(node, ast.Dict):
            found += [k for k in node.keys if k is not None for k in _strings(k)]
        yield from (c for c in found if c.value in KINDS)


def test_no_scalectl_variable_name_outside_the_contract() -> None:
    offenders = []
    for path in product_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and "SCALECTL_" in node.value
                and id(node) not in docs
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert offenders == [], "import the name from contract.env instead:\n" + "\n".join(offenders)


def test_no_event_kind_string_outside_the_contract() -> None:
    offenders = []
    for path in product_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in kind_literals(tree):
            offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert offenders == [], "use contract.events.EventKind instead:\n" + "\n".join(offenders)


def test_the_scan_finds_what_it_bans() -> None:
    # The two tests above pass on an empty scan too; this one proves they can fail.
    code = (
        'append_event(job, "restarted", cause="hang")\n'
        'self.event("rank_failed")\n'
        'if record.get("event") in ("finished", "failed"): pass\n'
        'if kind == "stopped": pass\n'
        'STYLE = {"resized": "cyan"}\n'
        'if outcome == "stopped": pass\n'  # an outcome, not an event kind
        'dump("resumed")\n'  # a label, not an event kind
    )
    found = [c.value for c in kind_literals(ast.parse(code))]
    assert sorted(found) == sorted(
        ["restarted", "rank_failed", "finished", "failed", "stopped", "resized"]
    )


def _writer_calls() -> Iterator[tuple[Path, ast.Call, EventKind]]:
    for path in product_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and _callee(node) in WRITERS):
                continue
            for arg in node.args[:2]:
                if (
                    isinstance(arg, ast.Attribute)
                    and isinstance(arg.value, ast.Name)
                    and arg.value.id == "EventKind"
                ):
                    yield path, node, EventKind[arg.attr]


def test_every_writer_uses_documented_fields_and_every_kind_is_written() -> None:
    written: set[EventKind] = set()
    undocumented = []
    for path, call, kind in _writer_calls():
        written.add(kind)
        allowed = set(EVENT_FIELDS[kind].fields) | COMMON_FIELDS
        for keyword in call.keywords:
            if keyword.arg is not None and keyword.arg not in allowed:
                undocumented.append(f"{path.relative_to(ROOT)}:{call.lineno}: {kind} {keyword.arg}")
    assert undocumented == [], "document the field in contract.events.EVENT_FIELDS:\n" + "\n".join(
        undocumented
    )
    assert set(EventKind) - written == set(), "kinds no product code writes"
    assert set(EVENT_FIELDS) == set(EventKind)
