"""The reliability corpus as a table: each hostile case, the bound the harness keeps against
it, what happened, the wall time and the peak memory of everything the case started.

    python benchmarks/reliability.py                    # this checkout
    python benchmarks/reliability.py --before 463deb3   # and an older commit beside it
    python benchmarks/reliability.py --case a-400-mb-spec-file --json out.json

The cases live in tests/reliability.py (the suite runs them too: tests/test_reliability.py).
Each runs in a child process of its own, so its peak memory (the largest resident set among
it and the processes it waited for) and time are its alone. `--before REF` exports REF with
`git archive` and runs the same cases against it, the harness imported from there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from reliability import CASES, Case, Context, Tree, available  # noqa: E402


def run_one(case_id: str, root: Path | None, shim: Path | None) -> dict[str, Any]:
    """Run one case here (in the child process) and return its outcome as JSON data."""
    case = next(c for c in CASES if c.id == case_id)
    tree = Tree.current() if root is None else Tree.at(root, shim or root / ".shim")
    with tempfile.TemporaryDirectory(prefix="reliability-") as tmp:
        try:
            outcome = case.run(Context(tree, Path(tmp)))
        except Exception as exc:  # the corpus itself failed on this tree: say so
            return {"held": False, "result": f"the case raised {type(exc).__name__}: {exc}"}
    return {
        "held": outcome.held,
        "result": outcome.result,
        "finished": outcome.finished,
        "recovered": outcome.recovered,
        **outcome.extra,
    }


def measure(case: Case, root: Path | None, shim: Path | None) -> dict[str, Any]:
    """The case in a child process: its outcome, wall seconds and peak resident MiB."""
    reason = available(case)
    if reason:
        return {"held": None, "result": f"skipped: {reason}", "seconds": 0.0, "mib": 0.0}
    argv = [sys.executable, __file__, "--one", case.id]
    if root is not None:
        argv += ["--tree", str(root), "--shim", str(shim)]
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - started
    try:
        data = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        data = {"held": False, "result": f"the case's process ended with status {status}"}
    kib = usage.ru_maxrss if sys.platform != "darwin" else usage.ru_maxrss // 1024
    return {**data, "seconds": round(seconds, 1), "mib": round(kib / 1024, 1)}


def export(ref: str, into: Path) -> Path:
    """The tree of commit `ref`, exported (not checked out: the working tree is untouched)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def verdict(row: dict[str, Any]) -> str:
    return {True: "held", False: "BROKEN", None: "skipped"}[row["held"]]


def lost(row: dict[str, Any]) -> str:
    if row.get("finished") is None:
        return ""
    return str(row["finished"] - (row.get("recovered") or 0))


def table(
    cases: list[Case], after: list[dict[str, Any]], before: list[dict[str, Any]] | None
) -> str:
    head = "| case | bound | after | s | peak MiB | checks lost |"
    rule = "|---|---|---|---:|---:|---:|"
    if before is not None:
        head += " before | s | peak MiB | checks lost |"
        rule += "---|---:|---:|---:|"
    lines = [head, rule]
    for i, case in enumerate(cases):
        a = after[i]
        line = (
            f"| {case.name} | {case.bound} | {verdict(a)}: {a['result']} | {a['seconds']} "
            f"| {a['mib']} | {lost(a)} |"
        )
        if before is not None:
            b = before[i]
            line += f" {verdict(b)}: {b['result']} | {b['seconds']} | {b['mib']} | {lost(b)} |"
        lines.append(line.replace("\n", " "))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--case",
        action="append",
        choices=[c.id for c in CASES],
        help="run only this case (repeatable)",
    )
    parser.add_argument("--before", metavar="REF", help="also run the cases against commit REF")
    parser.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    parser.add_argument("--shim", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        tree = Path(args.tree) if args.tree else None
        print(json.dumps(run_one(args.one, tree, Path(args.shim) if args.shim else None)))
        return 0
    cases = [c for c in CASES if not args.case or c.id in args.case]
    before_rows = None
    if args.before:
        work = Path(tempfile.mkdtemp(prefix="reliability-before-"))
        try:
            root = export(args.before, work / "tree")
            before_rows = []
            for case in cases:
                before_rows.append(measure(case, root, work / "shim"))
                print(f"before  {case.id}: {verdict(before_rows[-1])}", file=sys.stderr)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    after_rows = []
    for case in cases:
        after_rows.append(measure(case, None, None))
        print(f"after   {case.id}: {verdict(after_rows[-1])}", file=sys.stderr)
    print(table(cases, after_rows, before_rows))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "before": args.before,
                    "cases": [
                        {
                            "case": c.name,
                            "bound": c.bound,
                            "after": after_rows[i],
                            **({"before": before_rows[i]} if before_rows else {}),
                        }
                        for i, c in enumerate(cases)
                    ],
                },
                indent=2,
            ),
            encoding="utf-8",
        )
    return 0 if all(r["held"] is not False for r in after_rows) else 1


if __name__ == "__main__":
    sys.exit(main())
