"""report.html: the one page a provider vendor reads after a run.

One self-contained file (inline CSS, no script, no network), so it can be mailed, attached
to a CI job or opened from a share years later. Jinja2 renders it with autoescaping on:
messages, code symbols, provider names and spec sources all come from outside the harness
and are only ever inserted as text. The view model is built here in plain Python, so the
template stays a layout and the logic can be tested without a browser.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from conformance.reporting.model import (
    STATUS_ORDER,
    Check,
    data_yaml,
    has_check_codes,
    iter_checks,
    repro_file,
    repro_yaml,
    split_code,
    versions,
)
from conformance.reporting.results import verdict_of_run
from conformance.reporting.shapes import MethodEntry, Summary

REPORT_NAME = "report.html"

VERDICT_MEANINGS = (
    ("conforms", "every check passed and every documented code was exercised and passed."),
    (
        "partial",
        "nothing failed, but some checks were not applicable to this provider (it "
        "raised Unsupported) or some documented code was never exercised.",
    ),
    ("fails", "at least one check failed (or a spec error stopped one)."),
    ("not-applicable", "the provider supports none of it."),
)
CODE_MEANINGS = (
    ("pass", "every check that touched the code passed"),
    ("fail", "a check that touched the code failed"),
    ("untested", "no check reached the code"),
    ("not-applicable", "the checks that would reach it were not applicable"),
    (
        "observed",
        "(a mark beside pass) the provider gave another code, which the spec records "
        "under `observed` for its Windows version, and the run was --observed lenient",
    ),
)


def write_html(summary: Summary, out: Path, specs: dict[str, dict[str, Any]] | None = None) -> Path:
    """Render `out/report.html` from a results.json summary; return its path.

    `specs` maps a method id to {"file", "sources", "values"} (see `spec_sources`), so each
    failure can name the page its contract came from and each code show its value.
    """
    out.mkdir(parents=True, exist_ok=True)
    path = out / REPORT_NAME
    html = render_html(summary, specs)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path


def render_html(summary: Summary, specs: dict[str, dict[str, Any]] | None = None) -> str:
    """The page as a string (what `write_html` writes)."""
    template = _env().get_template("report.html.j2")
    return template.render(**view(summary, specs or {}))


@functools.cache
def _env() -> Environment:
    """One Jinja environment per process; autoescape is forced on for every template."""
    return Environment(
        loader=PackageLoader("conformance.reporting", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_visible,
    )


_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _visible(value: Any) -> Any:
    """Every value the page prints: control characters a provider sent (NUL, ESC, ...) shown
    as `\\xNN` instead of reaching the page raw."""
    if isinstance(value, str) and _CONTROL.search(value):
        shown = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))
        return Markup(shown) if isinstance(value, Markup) else shown  # (escaped already)
    return value


# -- the view model -------------------------------------------------------------------------


def view(summary: Summary, specs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Everything the template shows, as plain data."""
    anchors = _anchors(summary)
    totals: dict[str, int] = {
        "passed": 0,
        "failed": 0,
        "not_applicable": 0,
        "errors": 0,
        **cast("dict[str, int]", summary.get("totals", {})),  # (Totals: each an int)
    }
    verdict = verdict_of_run(totals, summary.get("methods", {}))
    return {
        "provider": str(summary.get("provider", "")),
        "profile": str(summary.get("profile", "")),
        "seed": summary.get("seed"),
        "observed_policy": str(summary.get("observed") or "strict"),
        "windows_version": str(
            (summary.get("capabilities") or {}).get("windows_version", "")
            if isinstance(summary.get("capabilities"), dict)
            else ""
        ),
        "schema": summary.get("schema"),
        "capabilities": _capabilities(summary.get("capabilities")),
        "versions": versions(summary),
        "versions_recorded": isinstance(summary.get("versions"), dict),
        "totals": totals,
        "checks_total": sum(int(v) for v in totals.values()),
        "verdict": verdict,
        "verdict_line": verdict_line(verdict, summary, totals),
        "families": families(summary, specs, anchors),
        "counted": has_check_codes(summary),
        "failures": failures(summary, specs, anchors),
        "failure_count": totals["failed"] + totals["errors"],
        "not_applicable": not_applicable(summary),
        "all_checks": all_checks(summary, anchors),
        "operations": operations(summary),
        "coverage": coverage(summary),
        "gate": summary.get("gate") if isinstance(summary.get("gate"), dict) else None,
        "comparison": summary.get("comparison")
        if isinstance(summary.get("comparison"), dict)
        else None,
        "verdict_meanings": VERDICT_MEANINGS,
        "code_meanings": CODE_MEANINGS,
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def verdict_line(verdict: str, summary: Summary, totals: dict[str, int]) -> str:
    """One sentence a person can repeat in a meeting."""
    methods = summary.get("methods", {})
    n_methods = len(methods)
    total = sum(int(v) for v in totals.values())
    bad = totals["failed"] + totals["errors"]
    if verdict == "fails":
        failing = sum(m.get("verdict") == "fails" for m in methods.values())
        errors = f" ({totals['errors']} stopped by a spec error)" if totals["errors"] else ""
        return (
            f"Does not conform: {bad} of {total} checks failed{errors}, "
            f"in {failing} of {n_methods} methods."
        )
    if verdict == "conforms":
        return (
            f"Conforms: all {total} selected checks passed and every documented code "
            f"of the {n_methods} methods was exercised."
        )
    if verdict == "partial":
        untested = sum(
            s == "untested" for m in methods.values() for s in m.get("codes", {}).values()
        )
        parts = (
            [f"{totals['not_applicable']} checks not applicable"]
            if totals["not_applicable"]
            else []
        )
        parts += [f"{untested} documented codes never exercised"] if untested else []
        return f"Partly conforms: nothing failed, but {' and '.join(parts) or 'some gaps'}."
    return "Nothing was tested: no selected check applied to this provider."


def _capabilities(raw: Any) -> list[tuple[str, list[str]]]:
    if not isinstance(raw, dict):
        return []
    return [
        (str(k), [str(x) for x in v] if isinstance(v, list) else [str(v)]) for k, v in raw.items()
    ]


def _anchors(summary: Summary) -> dict[str, str]:
    """Check name -> a unique, attribute-safe fragment id (names come from specs)."""
    anchors: dict[str, str] = {}
    for index, check in enumerate(iter_checks(summary)):
        slug = re.sub(r"[^a-z0-9]+", "-", check.name.lower()).strip("-")[:80]
        anchors.setdefault(check.name, f"check-{index}-{slug}")
    return anchors


def method_anchor(method: str) -> str:
    return "method-" + re.sub(r"[^a-z0-9]+", "-", method.lower()).strip("-")


def family_anchor(family: str) -> str:
    return "family-" + re.sub(r"[^a-z0-9]+", "-", family.lower()).strip("-")


def owner_anchor(check: Check) -> str:
    """Where a check's row is in the matrix: its method, or its family's heading."""
    return method_anchor(check.method) if check.method else family_anchor(check.family)


def families(
    summary: Summary, specs: dict[str, dict[str, Any]], anchors: dict[str, str]
) -> list[dict[str, Any]]:
    """Matrix rows grouped by family, families and methods in name order."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for method, info in summary.get("methods", {}).items():
        row = matrix_row(method, info, specs.get(method, {}), anchors)
        grouped.setdefault(str(info.get("family", "")), []).append(row)
    return [
        {
            "name": name or "(no family)",
            "anchor": family_anchor(name),
            "methods": sorted(rows, key=lambda r: r["id"]),
        }
        for name, rows in sorted(grouped.items())
    ]


def matrix_row(
    method: str, info: MethodEntry, spec: dict[str, Any], anchors: dict[str, str]
) -> dict[str, Any]:
    checks = [Check(method, str(info.get("family", "")), c) for c in info.get("checks", [])]
    values = spec.get("values", {})
    observed = info.get("observed")
    if not isinstance(observed, dict):
        observed = {}
    cells = [
        code_cell(str(code), str(status), checks, values.get(code, ""), anchors, observed.get(code))
        for code, status in info.get("codes", {}).items()
    ]
    return {
        "id": method,
        "anchor": method_anchor(method),
        "verdict": str(info.get("verdict", "")),
        "cells": cells,
        "tally": tally(checks),
    }


def tally(checks: list[Check]) -> str:
    """`9 checks: 5 passed, 4 failed` (only the statuses that occur)."""
    words = {
        "passed": "passed",
        "failed": "failed",
        "error": "errors",
        "not_applicable": "not applicable",
    }
    parts = [
        f"{n} {words[s]}"
        for s in ("passed", "failed", "error", "not_applicable")
        if (n := sum(c.status == s for c in checks))
    ]
    noun = "check" if len(checks) == 1 else "checks"
    return f"{len(checks)} {noun}: {', '.join(parts)}" if parts else "no checks ran"


def code_cell(
    code: str,
    status: str,
    checks: list[Check],
    value: str,
    anchors: dict[str, str],
    observed: Any = None,
) -> dict[str, Any]:
    """One code of one method: its status, how many checks touched it, where its failure is,
    and the `observed` entries that stood in for it (a pass that is a recorded departure)."""
    touching = [c for c in checks if code in c.codes]
    failing = [c for c in touching if c.codes[code] == "failed" or c.status == "error"]
    css = status if status in ("pass", "fail", "untested", "not-applicable") else "untested"
    return {
        "symbol": code,
        "value": value,
        "status": css,
        "touching": len(touching),
        "failing": len(failing),
        "href": "#" + anchors[failing[0].name] if failing else "",
        "observed": observed_text(observed),
    }


def observed_text(entries: Any) -> str:
    """`ERROR_X on Windows 10.0.19045 (observed[0], 3 times in 1 check)` per entry, or ""."""
    if not isinstance(entries, list):
        return ""
    parts = []
    for e in entries:
        if not isinstance(e, dict):
            continue
        checks = e.get("checks")
        if not isinstance(checks, list):
            checks = []
        times = "once" if e.get("times") == 1 else f"{e.get('times')} times"
        parts.append(
            f"{e.get('code')} on Windows {e.get('windows')} "
            f"(observed[{e.get('entry')}], {times} in {len(checks)} "
            f"check{'' if len(checks) == 1 else 's'}; {e.get('source', '')})"
        )
    return "; ".join(parts)


def failures(
    summary: Summary, specs: dict[str, dict[str, Any]], anchors: dict[str, str]
) -> list[dict[str, Any]]:
    """Failed and errored checks, grouped by method in the matrix's order."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    order: dict[str, tuple[str, str, str]] = {}
    for check in iter_checks(summary):
        if check.status in ("failed", "error"):
            grouped.setdefault(check.owner, []).append(
                failure(
                    check,
                    specs,
                    anchors,
                    str(summary.get("provider_path") or summary.get("provider", "")),
                )
            )
            order[check.owner] = (check.family, check.method, owner_anchor(check))
    return [
        {"id": m, "anchor": order[m][2], "failures": grouped[m]}
        for m in sorted(grouped, key=order.__getitem__)
    ]


def not_applicable(summary: Summary) -> list[dict[str, Any]]:
    """Not-applicable checks grouped by method and reason: one reason usually covers many;
    the methods the provider does not list in its capabilities are one row."""
    grouped: dict[tuple[str, str], list[str]] = {}
    missing: dict[str, list[str]] = {}
    for check in iter_checks(summary):
        if check.status != "not_applicable":
            continue
        if NOT_LISTED.match(check.message):
            missing.setdefault(check.owner, []).append(check.name)
        else:
            grouped.setdefault((check.owner, check.message), []).append(check.name)
    rows = [
        {"method": method, "reason": reason or "(no reason given)", "checks": names}
        for (method, reason), names in sorted(grouped.items())
    ]
    if missing:
        rows.insert(
            0,
            {
                "method": f"{len(missing)} method{'s' if len(missing) > 1 else ''}: "
                + ", ".join(sorted(missing)),
                "reason": "not in the provider's capabilities()['methods']",
                "checks": [n for names in missing.values() for n in names],
            },
        )
    return rows


NOT_LISTED = re.compile(r"^unsupported by the provider: method .+ is not in its capabilities$")


def failure(
    check: Check, specs: dict[str, dict[str, Any]], anchors: dict[str, str], provider: str
) -> dict[str, Any]:
    """Everything needed to understand and replay one failed or errored check."""
    details = check.details
    actual = details.get("actual")
    if not isinstance(actual, dict):
        actual = {}
    spec = specs.get(check.method, {})
    expected = [str(e) for e in details.get("expected") or []]
    return {
        "anchor": anchors[check.name],
        "method_anchor": owner_anchor(check),
        "name": check.name,
        "method": check.owner,
        "kind": check.kind,
        "status": check.status,
        "message": check.message,
        "expected": [split_code(e) for e in expected],
        "actual_hresult": _call_code(actual, expected),
        "actual_completion": _actual(actual.get("completion"), expected),
        "outputs": _outputs(actual),
        "repro": repro_yaml(check.repro),
        "replay": f"conformance replay {repro_file(check.name)} --provider {shlex.quote(provider)}"
        if check.repro
        else "",
        "state_before": data_yaml(details.get("state_before")),
        "state_after": data_yaml(details.get("state_expected_after")),
        "spec_file": str(spec.get("file", "")),
        "sources": [_source(s) for s in spec.get("sources", []) if isinstance(s, dict)],
    }


def _call_code(actual: dict[str, Any], expected: list[str]) -> tuple[str, str, str] | None:
    """The code the call returned. Where the result was delivered through the async object
    (a completion is there) and the call itself succeeded, the call's code is not what is
    judged: shown plain, the completion beside it carries the verdict."""
    shown = _actual(actual.get("hresult"), expected)
    if shown is not None and actual.get("completion") is not None and not _failed_code(shown[1]):
        return shown[0], shown[1], "plain"
    return shown


def _failed_code(hex_: str) -> bool:
    try:
        return bool(int(hex_, 16) & 0x80000000)
    except ValueError:
        return False


def _outputs(actual: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(name, value, css) of each out-parameter; one set although the call failed (a leak)
    is marked."""
    _, hex_ = split_code(str(actual.get("hresult") or ""))
    failed = _failed_code(hex_)
    return [
        (str(k), _shown(v), "got" if failed and v not in (None, "None") else "")
        for k, v in (actual.get("outputs") or {}).items()
    ]


def _actual(described: Any, expected: list[str]) -> tuple[str, str, str] | None:
    """(symbol, hex, css) of a returned code: red where it is not what the spec expected.

    Without an expectation (closed-world, out-params) only a value with no documented
    symbol is marked: the message says what was wrong with the others.
    """
    if not described:
        return None
    symbol, hex_ = split_code(described)
    wanted = {split_code(e)[1] or split_code(e)[0] for e in expected}
    if expected:
        css = "want" if (hex_ or symbol) in wanted else "got"
    else:
        css = "plain" if symbol else "got"
    return symbol, hex_, css


def _shown(value: Any) -> str:
    """An output parameter as a C programmer reads it: None is NULL."""
    return "NULL" if value is None else str(value)


def _source(source: dict[str, Any]) -> dict[str, Any]:
    """A spec source; a URL becomes a link only for http(s), never javascript: and friends."""
    url = str(source.get("url", "") or "")
    fields = source.get("fields")
    return {
        "doc": str(source.get("doc", "") or url),
        "url": url if url.startswith(("https://", "http://")) else "",
        "format": str(source.get("format", "") or ""),
        "lang": str(source.get("lang", "") or ""),
        "fields": ", ".join(map(str, fields)) if isinstance(fields, list) else "",
        "note": str(source.get("note", "") or ""),
    }


OPERATION_KINDS = ("reset", "setup", "call", "observe")
GOAL_KINDS = ("rules", "codes", "effects", "conditions", "arguments", "faults")


def operations(summary: Summary) -> dict[str, Any] | None:
    """What the run asked of the provider, by kind, beside what its plan estimated."""
    made = summary.get("operations")
    if not isinstance(made, dict):
        return None  # a results.json from before operations were counted
    plan: Mapping[str, Any] | None = summary.get("plan")
    if not isinstance(plan, dict):
        plan = {}
    estimated = plan.get("operations")
    if not isinstance(estimated, dict):
        estimated = {}
    return {
        "total": _int(made.get("total")),
        "batches": _int(made.get("batches")),
        "kinds": [
            (k, _int(made.get(k)), _int(estimated.get(k)) if estimated else None)
            for k in OPERATION_KINDS
        ],
        "estimated": _int(estimated.get("total")) if estimated else None,
        "seconds": plan.get("seconds"),
        "cases": plan.get("cases"),
        "budget": plan.get("budget"),
        "left_out": _int(plan.get("left_out")),
    }


FAMILY_KINDS = ("pairs", "steps", "transitions")


def coverage(summary: Summary) -> dict[str, Any] | None:
    """The plan's coverage per method and per family (covered/total per goal kind) and every
    item no case reached or the budget left out, with the reason."""
    missing: list[dict[str, str]] = []
    methods = _coverage_table(summary.get("methods", {}), GOAL_KINDS, "cases", missing)
    families = _coverage_table(summary.get("families") or {}, FAMILY_KINDS, "sequences", missing)
    if methods is None and families is None:
        return None
    return {"methods": methods, "families": families, "missing": missing}


def _coverage_table(
    owners: dict[str, Any], kinds: tuple[str, ...], count: str, missing: list[dict[str, str]]
) -> dict[str, Any] | None:
    rows = []
    totals = {k: [0, 0] for k in kinds}
    for owner, info in sorted(owners.items()):
        plan = info.get("plan") if isinstance(info, dict) else None
        if not isinstance(plan, dict) or not isinstance(plan.get("coverage"), dict):
            continue
        cov = plan["coverage"]
        cells = []
        for kind in kinds:
            got = cov.get(kind) if isinstance(cov.get(kind), dict) else {}
            covered, total = _int(got.get("covered")), _int(got.get("total"))
            totals[kind][0] += covered
            totals[kind][1] += total
            cells.append({"covered": covered, "total": total, "full": covered == total})
        rows.append(
            {
                "owner": owner,
                "count": _int(plan.get(count)),
                "operations": _int((plan.get("operations") or {}).get("total")),
                "cells": cells,
            }
        )
        for key, label in (("unreachable", "not reachable"), ("left_out", "left out")):
            for entry in cov.get(key) or []:
                if isinstance(entry, dict):
                    missing.append(
                        {
                            "method": owner,
                            "what": label,
                            "item": str(entry.get("item", "")),
                            "kind": str(entry.get("kind", "")),
                            "why": str(entry.get("why", "")),
                        }
                    )
    if not rows:
        return None
    return {
        "rows": rows,
        "kinds": kinds,
        "count": count,
        "totals": [{"covered": c, "total": t, "full": c == t} for c, t in totals.values()],
    }


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _operations_total(operations: object) -> int | None:
    return _int(operations.get("total")) if isinstance(operations, dict) else None


def all_checks(summary: Summary, anchors: dict[str, str]) -> list[dict[str, Any]]:
    """Per method (then per family, for family-level checks), every check: failures first."""
    groups: dict[str, list[Check]] = {}
    for check in iter_checks(summary):
        groups.setdefault(check.owner, []).append(check)
    verdicts = {
        str(f): str(i.get("verdict", "")) for f, i in (summary.get("families") or {}).items()
    }
    verdicts.update({m: str(i.get("verdict", "")) for m, i in summary.get("methods", {}).items()})
    rank = {s: i for i, s in enumerate(STATUS_ORDER)}
    out = []
    for owner, checks in sorted(groups.items(), key=lambda g: (not g[1][0].method, g[0])):
        checks.sort(key=lambda c: (rank.get(c.status, 9), c.name))
        out.append(
            {
                "id": owner,
                "family_level": not checks[0].method,
                "verdict": verdicts.get(owner, ""),
                "checks": [
                    {
                        "name": c.name,
                        "kind": c.kind,
                        "status": c.status,
                        "message": c.message,
                        "duration": c.duration,
                        "operations": _operations_total(c.data.get("operations")),
                        "observed": bool(c.data.get("observed")),
                        "href": "#" + anchors[c.name] if c.status in ("failed", "error") else "",
                    }
                    for c in checks
                ],
            }
        )
    return out
