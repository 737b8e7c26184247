"""allure-results/: the run as Allure result files, and the Allure 3 CLI that renders them.

The results are written directly in Allure's results format (one `<uuid>-result.json` per
check, attachments beside them) rather than through allure-pytest: the checks are known only
after the run, they come from the results stream, and a results.json from any machine can be
turned into Allure results again. Labels follow the domain, so Allure's behaviours view reads
family (epic) > interface (feature) > method (story), and `tag` filters by return code.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from conformance.errors import EXIT_USAGE
from conformance.reporting.model import (
    Check,
    interface_of,
    iter_checks,
    known_deviation,
    repro_yaml,
    versions,
)
from conformance.reporting.shapes import Summary

RESULTS_DIR = "allure-results"
REPORT_DIR = "allure-report"

STATUS = {"passed": "passed", "failed": "failed", "error": "broken", "not_applicable": "skipped"}
SEVERITY = {
    "scenario": "normal",
    "oracle": "critical",
    "closed-world": "critical",
    "out-params": "normal",
    "stateful": "critical",
    "repeat": "normal",
    "variants": "normal",
    "differential": "normal",
}
FAMILY_LEVEL = "family-level"
INSTALL_HINT = (
    "install the Allure 3 command line, which needs Node.js: "
    "`npm install allure` in the project folder (found in node_modules/.bin), "
    "or `npm install -g allure` (found on PATH)"
)


def write_allure_results(
    summary: Summary, out: Path, specs: dict[str, dict[str, Any]] | None = None
) -> Path:
    """Write one Allure result per check into `out/allure-results/`; return that folder.

    The folder is emptied of earlier result files first: Allure reads every file in it, and
    results of an older run would be shown as if they belonged to this one.
    """
    folder = out / RESULTS_DIR
    _clear(folder)
    clock = _Clock(summary)
    for check in iter_checks(summary):
        result = allure_result(
            check, clock, (specs or {}).get(check.method, {}), known_deviation(summary, check.name)
        )
        result["attachments"] = _attach(folder, check)
        _write_json(folder / f"{result['uuid']}-result.json", result)
    _write_environment(folder, summary)
    return folder


def _clear(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if old.is_file() and (
            "-result.json" in old.name
            or "-attachment." in old.name
            or old.name == "environment.properties"
        ):
            old.unlink()


class _Clock:
    """Start/stop times for checks that recorded only durations: laid end to end, ending now."""

    def __init__(self, summary: Summary):
        total = sum(c.duration for c in iter_checks(summary))
        self.now = int((time.time() - total) * 1000)

    def span(self, seconds: float) -> tuple[int, int]:
        start = self.now
        self.now += max(int(seconds * 1000), 1)
        return start, self.now


def allure_result(
    check: Check, clock: _Clock, spec: dict[str, Any], known: str | None = None
) -> dict[str, Any]:
    """One check as an Allure test result (without its attachments); a known deviation of a
    gated run is skipped, with the baseline's reason."""
    start, stop = clock.span(check.duration)
    status = STATUS.get(check.status, "unknown")
    if known is not None and check.status in ("failed", "error"):
        status = "skipped"
    ident = hashlib.md5(check.name.encode("utf-8"), usedforsecurity=False).hexdigest()
    result: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "historyId": ident,
        "testCaseId": ident,
        "name": check.name,
        "fullName": check.name,
        "status": status,
        "stage": "finished",
        "start": start,
        "stop": stop,
        "labels": labels(check),
        "parameters": [],
        "links": _links(spec),
        "steps": steps(check, status, start, stop),
    }
    if check.status != "passed":
        message = f"{known} — {check.message}" if status == "skipped" and known else check.message
        result["statusDetails"] = {"message": message, "trace": _trace(check)}
    if spec.get("file"):
        result["description"] = f"Contract: `{spec['file']}`"
    return result


def labels(check: Check) -> list[dict[str, str]]:
    """epic = family, feature = interface, story = method, tag = each code, severity by kind.

    A family-level check (the stateful machine) has no method: its feature is
    "family-level" and its story the family, so it sits beside the family's interfaces.
    """
    interface = interface_of(check.method) if check.method else FAMILY_LEVEL
    out = [
        {"name": "epic", "value": check.family},
        {"name": "feature", "value": interface},
        {"name": "story", "value": check.owner},
        {"name": "severity", "value": SEVERITY.get(check.kind, "normal")},
        {"name": "parentSuite", "value": check.family},
        {"name": "suite", "value": interface},
        {"name": "subSuite", "value": check.owner},
        {"name": "framework", "value": "conformance"},
        {"name": "language", "value": "python"},
    ]
    out += [{"name": "tag", "value": code} for code in check.codes]
    if check.kind:
        out.append({"name": "tag", "value": f"kind:{check.kind}"})
    return out


def _links(spec: dict[str, Any]) -> list[dict[str, str]]:
    return [
        {"name": str(s.get("doc") or s["url"]), "url": str(s["url"]), "type": "link"}
        for s in spec.get("sources", [])
        if isinstance(s, dict) and str(s.get("url", "")).startswith(("https://", "http://"))
    ]


def steps(check: Check, status: str, start: int, stop: int) -> list[dict[str, Any]]:
    """given / call / then from the reproduction: the failing case, step by step.

    A reproduction is either one call (`given`, `call`, `expect`) or a sequence (`given`,
    then `calls`, each a `given` or a `method` call with its `expect`); the last call is the
    one that failed.
    """
    repro = check.repro
    if not repro:
        return []
    out = _given(repro.get("given"), start)
    calls = repro.get("calls")
    if not isinstance(calls, list):
        calls = (
            [
                {
                    "method": check.method,
                    "call": repro.get("call") or {},
                    "expect": repro.get("expect"),
                }
            ]
            if "call" in repro
            else []
        )
    last = max(
        (i for i, c in enumerate(calls) if isinstance(c, dict) and "method" in c), default=-1
    )
    for index, entry in enumerate(calls):
        if not isinstance(entry, dict):
            continue
        if "method" not in entry:
            out += _given(entry.get("given"), start)
            continue
        final = index == last
        args = ", ".join(f"{k}={_flow(v)}" for k, v in (entry.get("call") or {}).items())
        out.append(
            _step(f"call {entry['method']}({args})", "passed", start, stop if final else start)
        )
        then = _step(
            _then(check, entry.get("expect"), final), status if final else "passed", stop, stop
        )
        if final and check.message:
            then["statusDetails"] = {"message": check.message}
        out.append(then)
    return out


def _given(given: Any, at: int) -> list[dict[str, Any]]:
    """One `given (n steps)` step holding one sub-step per created object or fault."""
    if not isinstance(given, list) or not given:
        return []
    inner = [_step(_flow(s), "passed", at, at) for s in given]
    noun = "step" if len(inner) == 1 else "steps"
    return [{**_step(f"given ({len(inner)} {noun})", "passed", at, at), "steps": inner}]


def _then(check: Check, expect: Any, final: bool) -> str:
    wanted = " or ".join(map(str, expect)) if isinstance(expect, list) else str(expect or "")
    text = f"then expect {wanted}" if wanted else "then"
    actual = check.details.get("actual")
    got = actual.get("hresult") if final and isinstance(actual, dict) else None
    return f"{text}; got {got}" if got else text


def _step(name: str, status: str, start: int, stop: int) -> dict[str, Any]:
    return {
        "name": name,
        "status": status,
        "stage": "finished",
        "start": start,
        "stop": stop,
        "steps": [],
        "attachments": [],
        "parameters": [],
    }


def _flow(value: Any) -> str:
    """A value as one line of YAML flow style (`{session: S1, target: T1}`)."""
    text = yaml.safe_dump(
        value, default_flow_style=True, allow_unicode=True, sort_keys=False, width=10_000
    )
    return text.strip().removesuffix("...").strip()


def _trace(check: Check) -> str:
    repro = repro_yaml(check.repro)
    return f"{check.message}\n\nreproduction:\n{repro}" if repro else check.message


def _attach(folder: Path, check: Check) -> list[dict[str, str]]:
    """Write the check's states and reproduction as attachment files; return their entries."""
    out = []
    for key, title in (
        ("state_before", "state before the call"),
        ("state_expected_after", "state the spec expects after the call"),
    ):
        value = check.details.get(key)
        if value is not None:
            out.append(
                _attachment(
                    folder,
                    title,
                    json.dumps(value, indent=2, ensure_ascii=False, default=str),
                    "application/json",
                    "json",
                )
            )
    actual = check.details.get("actual")
    if isinstance(actual, dict):
        out.append(
            _attachment(
                folder,
                "provider outcome",
                json.dumps(
                    {"expected": check.details.get("expected"), **actual},
                    indent=2,
                    ensure_ascii=False,
                    default=str,
                ),
                "application/json",
                "json",
            )
        )
    if check.repro:
        out.append(
            _attachment(folder, "reproduction", repro_yaml(check.repro), "application/yaml", "yaml")
        )
    return out


def _attachment(folder: Path, name: str, text: str, mime: str, ext: str) -> dict[str, str]:
    source = f"{uuid.uuid4()}-attachment.{ext}"
    (folder / source).write_text(text, encoding="utf-8")
    return {"name": name, "source": source, "type": mime}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1, default=str), encoding="utf-8")


def _write_environment(folder: Path, summary: Summary) -> None:
    """environment.properties: the run's provider, profile, seed and versions in Allure's panel."""
    facts = {
        "provider": summary.get("provider"),
        "profile": summary.get("profile"),
        "seed": summary.get("seed") if summary.get("seed") is not None else "random",
        **versions(summary),
    }
    lines = [f"{_prop(k)}={_prop(v)}" for k, v in facts.items()]
    (folder / "environment.properties").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _prop(value: Any) -> str:
    """Escape a value for a .properties file (backslash, newlines, separators)."""
    text = str(value).replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return text.replace("=", "\\=").replace(":", "\\:")


# -- rendering with the Allure 3 CLI ----------------------------------------------------------


def find_allure(project: Path | None = None) -> str | None:
    """The `allure` command: the project's node_modules/.bin first, then PATH."""
    roots = [project] if project else []
    roots += [Path.cwd(), Path(__file__).resolve().parents[2]]
    for root in roots:
        for name in ("allure", "allure.cmd"):
            candidate = root / "node_modules" / ".bin" / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return shutil.which("allure")


def render_allure_report(out: Path, project: Path | None = None) -> int:
    """Render `out/allure-results` into `out/allure-report` with Allure 3; return its exit code.

    Returns 2 with a message saying how to install Allure when Node.js or the `allure`
    package is missing, or when there are no results to render.
    """
    results, report = out / RESULTS_DIR, out / REPORT_DIR
    if not results.is_dir():
        print(
            f"no Allure results in {results}: run `conformance run --out {out}` first",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if shutil.which("node") is None:
        print(
            f"cannot render the Allure report: Node.js is not installed; {INSTALL_HINT}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    allure = find_allure(project)
    if allure is None:
        print(
            f"cannot render the Allure report: the `allure` command was not found; {INSTALL_HINT}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    command = [
        allure,
        "generate",
        str(results.resolve()),
        "--output",
        str(report.resolve()),
        "--report-name",
        f"conformance: {out.name}",
    ]
    try:
        return subprocess.run(command, cwd=out, check=False).returncode
    except OSError as exc:
        print(f"cannot run {allure}: {exc}; {INSTALL_HINT}", file=sys.stderr)
        return EXIT_USAGE
