"""Results: the stream of finished checks, and results.json built from it (stable format).

Every finished check is one line appended to `results.jsonl` and flushed before the next check
starts, so nothing already learned is lost if the run dies. `results.json` (per method: verdict,
per-code status, the checks) is rebuilt from that stream; every report is a reader of it.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from conformance.engine.operations import Tally
from conformance.engine.repro import Repro
from conformance.errors import WriteError
from conformance.reporting.shapes import (
    CheckEntry,
    Covered,
    Details,
    FamilyEntry,
    Header,
    MethodCheckEntry,
    MethodEntry,
    MethodPlanSummary,
    Missing,
    ObservedHit,
    ObservedUse,
    Operations,
    PlanCoverage,
    RegressionOutcome,
    Summary,
    Totals,
)

SCHEMA = 1


@dataclass
class CheckResult:
    name: str
    method: str
    kind: str
    case: str
    status: str
    message: str = ""
    codes: dict[str, str] = field(default_factory=dict)
    repro: Repro | None = None
    duration: float = 0.0
    family: str = ""
    details: Details | None = None
    observed: list[ObservedHit] | None = None  # `observed` entries that excused results
    operations: Operations | None = None  # provider operations the check made, by kind
    unreached: list[Missing] | None = None  # planned coverage its cases did not reach
    regressions: list[RegressionOutcome] | None = None  # saved cases it replayed first


@dataclass
class MethodInfo:
    """What the report needs of a method besides its checks."""

    family: str
    codes: list[str]
    interface: str = ""
    file: str = ""
    plan: MethodPlanSummary | None = None  # the method's planned cases and their coverage


class ResultStream:
    """Appends checks to results.jsonl and keeps results.json current."""

    def __init__(
        self,
        out: Path,
        header: Header,
        methods: dict[str, MethodInfo],
        stream: str = "results.jsonl",
        summary: bool = True,
    ):
        self.out = out
        (out / stream).parent.mkdir(parents=True, exist_ok=True)
        self.header = header
        self.methods = methods
        self.results: list[CheckResult] = []
        self.summary = summary  # a worker of a parallel run leaves results.json to the controller
        try:
            self._jsonl = open(out / stream, "wb")  # noqa: SIM115  (bytes: whole lines or none)
        except OSError as exc:
            raise ResultsWriteError(
                f"{out / stream}: cannot write the results: {exc.strerror or exc}"
            ) from None
        self._last_summary = 0.0
        try:
            self._write_line(
                {"event": "start", **header, "methods": {k: asdict(v) for k, v in methods.items()}}
            )
            self.write_summary()
        except ResultsWriteError:
            self._jsonl.close()
            raise

    def _write_line(self, record: dict[str, Any]) -> None:
        """One whole line, or none: a line a full disk cut short is taken back, so the stream
        stays readable to its last finished check."""
        line = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        end = self._jsonl.tell()
        try:
            self._jsonl.write(line)
            self._jsonl.flush()
        except OSError as exc:
            with contextlib.suppress(OSError):
                self._jsonl.seek(end)
                self._jsonl.truncate(end)
            raise ResultsWriteError(
                f"{self._jsonl.name}: cannot write the results: "
                f"{exc.strerror or exc}; every check finished before "
                "this one is in it"
            ) from None

    def add(self, result: CheckResult) -> None:
        self.results.append(result)
        self._write_line({"event": "check", "run": self.header.get("run"), **asdict(result)})
        if time.monotonic() - self._last_summary > 0.5:
            self.write_summary()

    def close(self) -> Summary:
        summary = self.write_summary()
        self._write_line({"event": "end", "totals": summary["totals"]})
        self._jsonl.close()
        return summary

    def write_summary(self) -> Summary:
        self._last_summary = time.monotonic()
        summary = summarize(self.header, self.methods, self.results)
        return write_summary(summary, self.out) if self.summary else summary


class ResultsWriteError(WriteError):
    """Results could not be written (a full or read-only disk); names the file and why."""


def write_summary(summary: Summary, out: Path) -> Summary:
    """results.json, replaced atomically so a reader never sees half a file (and no partial
    temporary file is left when the disk is full)."""
    tmp = out / "results.json.tmp"
    try:
        tmp.write_text(
            json.dumps(summary, indent=2, ensure_ascii=False, default=str), encoding="utf-8"
        )
        tmp.replace(out / "results.json")
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ResultsWriteError(
            f"{out / 'results.json'}: cannot write: {exc.strerror or exc}"
        ) from None
    return summary


def code_status(statuses: list[str]) -> str:
    if "fail" in statuses:
        return "fail"
    if "pass" in statuses:
        return "pass"
    if "not-applicable" in statuses:
        return "not-applicable"
    return "untested"


def method_verdict(checks: list[CheckResult], codes: dict[str, str]) -> str:
    """The compliance rule for one method (README: "What the verdicts mean")."""
    if any(c.status in ("failed", "error") for c in checks):
        return "fails"
    if not checks or all(c.status == "not_applicable" for c in checks):
        return "not-applicable"
    if any(c.status == "not_applicable" for c in checks) or any(
        s != "pass" for s in codes.values()
    ):
        return "partial"
    return "conforms"


def summarize(
    header: Header, methods: dict[str, MethodInfo], results: list[CheckResult]
) -> Summary:
    """results.json from the run's header, its methods and its finished checks."""
    totals: Totals = {"passed": 0, "failed": 0, "not_applicable": 0, "errors": 0}
    key: dict[str, Literal["passed", "failed", "not_applicable", "errors"]] = {
        "passed": "passed",
        "failed": "failed",
        "not_applicable": "not_applicable",
        "error": "errors",
    }
    by_method: dict[str, list[CheckResult]] = {}
    operations = Tally()
    for r in results:
        totals[key[r.status]] += 1
        by_method.setdefault(r.method, []).append(r)
        if r.operations:
            operations.merge(r.operations)
    out_methods: dict[str, MethodEntry] = {}
    for method, info in methods.items():
        checks = by_method.get(method, [])
        marks: dict[str, list[str]] = {c: [] for c in info.codes}
        for r in checks:
            for code, status in r.codes.items():
                if code not in marks:
                    continue  # an `also` code: outside the documented table
                marks[code].append(
                    {"passed": "pass", "failed": "fail"}.get(status, "not-applicable")
                )
        codes = {c: code_status(s) for c, s in marks.items()}
        out_methods[method] = {
            "verdict": method_verdict(checks, {c: codes[c] for c in info.codes}),
            "family": info.family,
            "codes": codes,
            "checks": [_method_check(r) for r in checks],
        }
        if info.plan is not None:
            out_methods[method]["plan"] = reached_plan(info.plan, checks)
        excused = observed_codes(method, results)
        if excused:
            out_methods[method]["observed"] = excused
    family_checks: dict[str, list[CheckEntry]] = {}
    for r in results:
        if r.method not in methods:  # a family-level check that passed (or blamed no method)
            family_checks.setdefault(r.family, []).append(_family_check(r))
    run_plan = header.get("plan")
    planned = (run_plan.get("families") if run_plan else None) or {}
    for name in planned:
        family_checks.setdefault(name, [])
    families: dict[str, FamilyEntry] = {}
    for name, entries in family_checks.items():
        verdict = method_verdict(
            [CheckResult(c["name"], "", c["kind"], "", c["status"]) for c in entries], {}
        )
        families[name] = (
            {"checks": entries, "plan": planned[name], "verdict": verdict}
            if name in planned
            else {"checks": entries, "verdict": verdict}
        )
    return {
        "schema": SCHEMA,
        **header,
        "totals": totals,
        "operations": cast(Operations, operations.as_dict()),
        "coverage": coverage_reached([*out_methods.values(), *families.values()]),
        "methods": out_methods,
        "families": families,
    }


def _method_check(r: CheckResult) -> MethodCheckEntry:
    entry: MethodCheckEntry = {
        "name": r.name,
        "kind": r.kind,
        "status": r.status,
        "message": r.message,
        "codes": r.codes,
        "repro": r.repro,
        "details": r.details,
        "duration": round(r.duration, 4),
    }
    _optional_keys(entry, r)
    return entry


def _family_check(r: CheckResult) -> CheckEntry:
    entry: CheckEntry = {
        "name": r.name,
        "kind": r.kind,
        "status": r.status,
        "message": r.message,
        "repro": r.repro,
        "details": r.details,
        "duration": round(r.duration, 4),
    }
    _optional_keys(entry, r)
    return entry


def _optional_keys(entry: CheckEntry, r: CheckResult) -> None:
    if r.operations is not None:
        entry["operations"] = r.operations
    if r.regressions:
        entry["regressions"] = r.regressions
    if r.observed:
        entry["observed"] = r.observed


def coverage_reached(owners: list[MethodEntry | FamilyEntry]) -> dict[str, Covered]:
    """covered/total per coverage kind over the plans of methods and families, as their
    cases reached it."""
    out: dict[str, Covered] = {}
    for info in owners:
        plan = info.get("plan")
        coverage = (plan.get("coverage") if plan else None) or {}
        for kind, value in coverage.items():
            if isinstance(value, dict):
                entry = out.setdefault(kind, {"covered": 0, "total": 0})
                entry["covered"] += int(value.get("covered", 0))
                entry["total"] += int(value.get("total", 0))
    return out


def reached_plan(plan: MethodPlanSummary, checks: list[CheckResult]) -> MethodPlanSummary:
    """A method's plan with the coverage its executed cases reached: an item whose every case
    the provider could not run (Unsupported) moves from covered to unreachable, with why."""
    lost: dict[str, Missing] = {}
    for check in checks:
        for entry in check.unreached or ():
            lost.setdefault(entry["item"], entry)
    if not lost:
        return plan
    coverage: PlanCoverage = {
        k: (v.copy() if isinstance(v, dict) else list(v))
        for k, v in plan.get("coverage", {}).items()
    }
    for entry in lost.values():
        kind = coverage.get(entry["kind"])
        if isinstance(kind, dict) and kind.get("covered"):
            kind["covered"] -= 1
    earlier = coverage.get("unreachable", [])
    coverage["unreachable"] = [*(earlier if isinstance(earlier, list) else []), *lost.values()]
    reached: MethodPlanSummary = {**plan, "coverage": coverage}
    return reached


def observed_codes(method: str, results: list[CheckResult]) -> dict[str, list[ObservedUse]]:
    """Documented code -> the `observed` entries of `method` that stood in for it, with the
    checks they excused (a family's stateful check excuses calls of several methods)."""
    out: dict[str, dict[int, ObservedUse]] = {}
    for r in results:
        for hit in r.observed or ():
            if hit.get("method") != method:
                continue
            instead = hit.get("instead_of")
            for code in [instead] if instead else hit.get("expected", []):
                entry = out.setdefault(code, {}).setdefault(
                    hit["entry"],
                    {
                        "entry": hit["entry"],
                        "windows": hit.get("windows"),
                        "code": hit.get("code"),
                        "source": hit.get("source", ""),
                        "checks": [],
                        "times": 0,
                    },
                )
                entry["times"] += int(hit.get("times", 1))
                if r.name not in entry["checks"]:
                    entry["checks"].append(r.name)
    return {code: list(entries.values()) for code, entries in sorted(out.items())}


def run_verdict(summary: Summary) -> str:
    """conforms / fails / partial / not-applicable for the whole run."""
    return verdict_of_run(summary["totals"], summary["methods"])


def verdict_of_run(t: Mapping[str, object], methods: Mapping[str, MethodEntry]) -> str:
    """The run's verdict from its totals and its methods."""
    verdicts = [m["verdict"] for m in methods.values()]
    if t["failed"] or t["errors"] or "fails" in verdicts:
        return "fails"
    if not t["passed"]:
        return "not-applicable"
    if any(v != "conforms" for v in verdicts):
        return "partial"
    return "conforms"


def merge_streams(
    out: Path,
    paths: list[Path],
    plans: dict[str, Any] | None = None,
    run: str | None = None,
    notes: list[str] | None = None,
) -> Summary:
    """One results.jsonl and results.json from the streams of a parallel run's workers;
    `plans` (the controller's: the run's `plan` and each method's) fill in what workers that
    planned lazily left out. Only the streams of run `run` are merged (by default the run of
    the newest stream): a worker's stream another run left in the folder is named in `notes`
    and left out."""
    parts = {path: read_stream(path, notes) for path in sorted(paths)}
    if run is None and parts:
        newest = max(parts, key=lambda p: p.stat().st_mtime)
        run = parts[newest][0].get("run")
    header = cast(Header, {})  # (filled from the first stream of the run)
    methods: dict[str, MethodInfo] = {}
    results: list[CheckResult] = []
    merged = 0
    for path, (part_header, part_methods, part_results) in parts.items():
        if part_header.get("run") != run:
            if notes is not None:
                notes.append(
                    f"{path}: left out: from another run "
                    f"({part_header.get('run') or 'no run id'}, not {run})"
                )
            continue
        merged += 1
        header = header or part_header
        methods.update(part_methods)
        results.extend(part_results)
    if plans is not None:
        header = {**header, "plan": header.get("plan") or plans["plan"]}
        for method, info in methods.items():
            if info.plan is None:
                info.plan = plans["methods"].get(method)
    header = {
        **header,
        "workers": merged,
        "checks_selected": max(int(header.get("checks_selected", 0)), len(results)),
    }
    stream = ResultStream(out, header, methods)
    for result in results:
        stream.add(result)
    return stream.close()


def read_stream(
    path: Path, skipped: list[str] | None = None
) -> tuple[Header, dict[str, MethodInfo], list[CheckResult]]:
    """Read a results.jsonl back, skipping a torn line (a run killed mid-write, even inside a
    UTF-8 character) and any line that is not one of its records; `skipped` gets a note for
    each (which line, and why)."""
    header = cast(Header, {})  # (the stream's first line; none in a stream without it)
    methods: dict[str, MethodInfo] = {}
    results: list[CheckResult] = []
    text = path.read_bytes().decode("utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), 1):
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise TypeError("not a record")
            event = record.pop("event", None)
            if event == "start":
                methods = {k: MethodInfo(**v) for k, v in record.pop("methods", {}).items()}
                header = cast(Header, record)  # (written by ResultStream; read with .get)
            elif event == "check":
                run = record.pop("run", None)
                if run is not None and run != header.get("run"):
                    raise TypeError(f"from another run ({run}, not {header.get('run')})")
                results.append(CheckResult(**record))
        except (ValueError, TypeError, AttributeError) as exc:
            if skipped is not None:
                skipped.append(f"{path}:{number}: skipped: {type(exc).__name__}: {str(exc)[:80]}")
    return header, methods, results
