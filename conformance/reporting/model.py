"""What every report reads out of a results.json summary, in one place.

Each writer (HTML, JUnit, Allure) is a reader of the same summary; the small questions they
all ask ("which codes does this check touch?", "what is the interface of this method?",
"what did the provider return, as symbol and hex?") are answered here once, so the three
reports cannot drift apart. Nothing here knows a method, family or provider by name.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from conformance.engine.repro import Repro
from conformance.reporting.shapes import CheckEntry, Summary

#: check statuses (results.json) in the order a reader wants to see them
STATUS_ORDER = ("failed", "error", "not_applicable", "passed")

_DESCRIBED = re.compile(r"^(?P<symbol>.*?)\s*\((?P<hex>0x[0-9A-Fa-f]+)\)$")
_HEX = re.compile(r"^0x[0-9A-Fa-f]+$")
# XML 1.0 forbids most C0 controls, surrogates and U+FFFE/U+FFFF even as character references.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class Check:
    """One check of one method (or of a whole family), flattened for writers.

    Family-level checks (the stateful machine of a family) that blamed no method live under
    results.json's `families`; their `method` is "" and their `owner` the family.
    """

    method: str
    family: str
    data: CheckEntry

    @property
    def owner(self) -> str:
        """The method id, or the family for a family-level check: what the check is about."""
        return self.method or self.family

    @property
    def name(self) -> str:
        return str(self.data.get("name", ""))

    @property
    def kind(self) -> str:
        return str(self.data.get("kind", ""))

    @property
    def status(self) -> str:
        return str(self.data.get("status", ""))

    @property
    def message(self) -> str:
        return str(self.data.get("message") or "")

    @property
    def repro(self) -> Repro | None:
        repro = self.data.get("repro")
        return repro if isinstance(repro, dict) else None

    @property
    def details(self) -> dict[str, Any]:
        details: object = self.data.get("details")  # (read from a file)
        return details if isinstance(details, dict) else {}

    @property
    def duration(self) -> float:
        try:
            return float(self.data.get("duration") or 0.0)
        except (TypeError, ValueError):
            return 0.0

    @property
    def codes(self) -> dict[str, str]:
        return check_codes(self.data)


def iter_checks(summary: Summary) -> Iterator[Check]:
    """Every check of the run: method by method, then the family-level ones."""
    for method, info in summary.get("methods", {}).items():
        for data in info.get("checks", []):
            yield Check(method, str(info.get("family", "")), data)
    for family, entry in (summary.get("families") or {}).items():
        for check in entry.get("checks", []):
            yield Check("", str(family), check)


def check_codes(check: CheckEntry) -> dict[str, str]:
    """The codes a check touched, code -> passed|failed|not_applicable.

    results.json carries them per check when the stream wrote them (`codes`); an older
    summary has only the reproduction, whose `expect` names the codes a failure was about.
    """
    codes = check.get("codes")
    if isinstance(codes, dict):
        return {str(k): str(v) for k, v in codes.items()}
    repro = check.get("repro")
    if isinstance(repro, dict) and check.get("status") in ("failed", "error"):
        expect = repro.get("expect")
        listed = expect if isinstance(expect, list) else [expect] if expect else []
        return {str(c): "failed" for c in listed}
    return {}


def has_check_codes(summary: Summary) -> bool:
    """Whether the summary records per-check codes (needed to count checks per code)."""
    return any(isinstance(c.data.get("codes"), dict) for c in iter_checks(summary))


def with_check_codes(summary: Summary, stream: Path) -> Summary:
    """The summary with each check's `codes` filled in from results.jsonl where missing.

    results.jsonl is the run's event stream and records the codes of every check; a
    results.json written before summaries carried them can be completed from it.
    """
    if has_check_codes(summary) or not stream.is_file():
        return summary
    by_name: dict[str, dict[str, str]] = {}
    for line in stream.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line from a run killed mid-write
        if record.get("event") == "check" and isinstance(record.get("codes"), dict):
            by_name[record.get("name", "")] = record["codes"]

    def filled(groups: dict[str, Any]) -> dict[str, Any]:
        return {
            key: {
                **info,
                "checks": [
                    {**c, "codes": by_name[c["name"]]} if c.get("name") in by_name else c
                    for c in info.get("checks", [])
                ],
            }
            for key, info in groups.items()
        }

    out: Summary = {**summary, "methods": filled(summary.get("methods", {}))}
    if summary.get("families"):
        out["families"] = filled(summary["families"])
    return out


def repro_file(check: str) -> str:
    """Where `conformance run` saved a check's reproduction, relative to its output folder.

    Mirrors `plugin.write_repro` (DIR/repro/<slug of the check name>.yaml); the report
    sits in DIR, so the path also works as a link from report.html.
    """
    return f"repro/{re.sub(r'[^a-z0-9]+', '-', check.lower()).strip('-')}.yaml"


def interface_of(method: str) -> str:
    """The interface of a COM method id (`IFoo::Bar` -> `IFoo`); a function is its own."""
    return method.split("::", 1)[0] if "::" in method else method


def split_code(described: Any) -> tuple[str, str]:
    """`S_OK (0x00000000)` -> (`S_OK`, `0x00000000`); a bare `0x80070058` -> ("", hex)."""
    text = "" if described is None else str(described)
    match = _DESCRIBED.match(text)
    if match:
        return match["symbol"], match["hex"].upper().replace("0X", "0x")
    if _HEX.match(text):
        return "", text.upper().replace("0X", "0x")
    return text, ""


def repro_yaml(repro: Repro | None) -> str:
    """A reproduction as the YAML a spec author pastes under `scenarios`."""
    if not repro:
        return ""
    return yaml.safe_dump(repro, sort_keys=False, allow_unicode=True, default_flow_style=None)


def data_yaml(value: Any) -> str:
    """Any JSON-shaped value (states, outputs) as compact block YAML for reading."""
    if value in (None, {}, []):
        return ""
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, default_flow_style=None)


def xml_text(value: Any) -> str:
    """Text safe inside XML 1.0: forbidden characters become U+FFFD (they cannot be escaped)."""
    return _NOT_XML.sub("\ufffd", "" if value is None else str(value))


def versions(summary: Summary | None = None) -> dict[str, str]:
    """The versions behind a run: those recorded in the summary, else this environment's."""
    recorded = summary.get("versions") if summary else None
    if isinstance(recorded, dict) and recorded:
        return {str(k): str(v) for k, v in recorded.items()}
    return run_versions()


def run_versions() -> dict[str, str]:
    """python, conformance and hypothesis versions of this process (for the run header)."""
    out = {"python": sys.version.split()[0]}
    for dist in ("conformance", "hypothesis"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def spec_sources(specs: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """Method id -> {file, sources, values} from spec objects, for the report's provenance.

    Takes anything with the spec model's `id`, `file`, `sources` and `codes` attributes, so
    reporting depends on the spec model only, never on the engine.
    """
    out: dict[str, dict[str, Any]] = {}
    for spec in specs:
        out[spec.id] = {
            "file": str(getattr(spec, "file", "") or ""),
            "sources": [dict(s) for s in getattr(spec, "sources", ()) or ()],
            "values": {c.symbol: f"0x{c.value:08X}" for c in getattr(spec, "codes", ())},
        }
    return out


def known_deviation(summary: Summary, check: str) -> str | None:
    """The baseline's reason when a failed check is a known deviation of a gated run
    (results.json `gate`), else None: reports show it as skipped, not as a failure."""
    gate = summary.get("gate")
    if not isinstance(gate, dict):
        return None
    for entry in [*(gate.get("known") or []), *(gate.get("flaky") or [])]:
        if isinstance(entry, dict) and entry.get("check") == check:
            return (
                f"known deviation ({gate.get('baseline') or 'baseline'}): {entry.get('reason', '')}"
            )
    return None
