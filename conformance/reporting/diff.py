"""Comparing two runs: per method and code, per check, and in operations, what changed.

`conformance diff OLD_DIR NEW_DIR` reads the two runs' results.json; `conformance run
--compare OLD_DIR` keeps the same comparison in the new run's results.json (`comparison`, a
compatible addition), which report.html shows. A vendor fixing one bug at a time reads what
became green, what broke, and what the fix cost in operations.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from conformance.engine.operations import KINDS as OPERATION_KINDS
from conformance.errors import UsageError
from conformance.reporting.shapes import (
    CheckEntry,
    Comparison,
    MethodChange,
    StatusChange,
    Summary,
)

FAILING = ("failed", "error")


class DiffError(UsageError):
    """A run folder cannot be compared; the message names the file."""


def load_run(folder: Path) -> Summary:
    path = folder / "results.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DiffError(f"{path}: no results.json (is {folder} a run's output folder?)") from None
    except (OSError, ValueError) as exc:
        raise DiffError(f"{path}: cannot be read: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("methods"), dict):
        raise DiffError(f"{path}: not a results.json (no `methods`)")
    return cast(Summary, data)  # (every reader checks what it reads)


def checks_of(summary: Summary) -> dict[str, CheckEntry]:
    # (a summary read from a file: each part checked as it is read)
    groups: list[Any] = [
        *summary.get("methods", {}).values(),
        *(summary.get("families") or {}).values(),
    ]
    return {
        str(c.get("name")): cast(CheckEntry, c)
        for g in groups
        if isinstance(g, dict)
        for c in g.get("checks", [])
        if isinstance(c, dict)
    }


def compare(old: Summary, new: Summary, old_label: str = "", new_label: str = "") -> Comparison:
    """What changed from `old` to `new` (two results.json summaries)."""
    before, after = checks_of(old), checks_of(new)
    status = {name: str(c.get("status")) for name, c in before.items()}
    now = {name: str(c.get("status")) for name, c in after.items()}
    newly_failing = sorted(
        n for n, s in now.items() if s in FAILING and status.get(n) not in FAILING
    )
    newly_passing = sorted(n for n, s in now.items() if s == "passed" and status.get(n) in FAILING)
    changed: list[StatusChange] = [
        {"check": n, "old": status[n], "new": s}
        for n, s in sorted(now.items())
        if n in status and s != status[n] and n not in newly_failing and n not in newly_passing
    ]
    methods: dict[str, MethodChange] = {}
    old_methods, new_methods = old.get("methods", {}), new.get("methods", {})
    for method in sorted(set(old_methods) | set(new_methods)):
        was: Mapping[str, Any] = old_methods.get(method) or {}
        is_: Mapping[str, Any] = new_methods.get(method) or {}
        codes = {
            code: [(was.get("codes") or {}).get(code), (is_.get("codes") or {}).get(code)]
            for code in sorted(set(was.get("codes") or {}) | set(is_.get("codes") or {}))
        }
        codes = {c: pair for c, pair in codes.items() if pair[0] != pair[1]}
        verdict = [was.get("verdict"), is_.get("verdict")]
        if codes or verdict[0] != verdict[1]:
            methods[method] = {"verdict": verdict, "codes": codes}
    ops_old: Mapping[str, Any] = old.get("operations") or {}
    ops_new: Mapping[str, Any] = new.get("operations") or {}
    return {
        "old": old_label,
        "new": new_label,
        "newly_failing": newly_failing,
        "newly_passing": newly_passing,
        "changed": changed,
        "added": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "methods": methods,
        "operations": {
            kind: [ops_old.get(kind), ops_new.get(kind)] for kind in ("total", *OPERATION_KINDS)
        },
    }


def render(diff: Comparison) -> str:
    """The comparison as text: what broke, what was fixed, verdicts and codes, operations."""
    lines = [f"comparing {diff.get('old') or 'the old run'} -> {diff.get('new') or 'the new run'}"]
    for title, names in (
        ("newly failing", diff["newly_failing"]),
        ("newly passing", diff["newly_passing"]),
    ):
        lines.append(f"{title} ({len(names)}):")
        lines += [f"  {name}" for name in names]
    if diff["changed"]:
        lines.append(f"changed status ({len(diff['changed'])}):")
        lines += [f"  {c['check']}: {c['old']} -> {c['new']}" for c in diff["changed"]]
    if diff["methods"]:
        lines.append("methods:")
        for method, info in diff["methods"].items():
            old_verdict, new_verdict = info["verdict"]
            codes = ", ".join(
                f"{c} {a or '-'} -> {b or '-'}" for c, (a, b) in info["codes"].items()
            )
            lines.append(
                f"  {method}: {old_verdict or '-'} -> {new_verdict or '-'}"
                + (f" ({codes})" if codes else "")
            )
    if diff["added"] or diff["removed"]:
        lines.append(
            f"checks only in the new run: {len(diff['added'])}, only in the old: "
            f"{len(diff['removed'])}"
        )
    ops = diff["operations"]
    if ops["total"][0] is not None or ops["total"][1] is not None:
        lines.append(
            "operations: "
            + ", ".join(
                f"{kind} {a if a is not None else '-'} -> {b if b is not None else '-'}"
                for kind, (a, b) in ops.items()
            )
        )
    return "\n".join(lines)
