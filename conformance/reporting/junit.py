"""junit.xml: the format every CI system can show and gate on.

One `<testsuite>` per method (so dashboards group by method), one `<testcase>` per check:
`classname` is the method id (the family, for a family-level check such as the stateful
machine) and `name` the check's stable name, so a test's history in the CI tool survives
across runs. A failed check carries its message and the reproduction, a
spec error is an `<error>`, a not-applicable check is `<skipped>` with its reason.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from conformance.reporting.model import (
    Check,
    iter_checks,
    known_deviation,
    repro_file,
    repro_yaml,
    xml_text,
)
from conformance.reporting.shapes import Summary

JUNIT_NAME = "junit.xml"


def write_junit(summary: Summary, out: Path) -> Path:
    """Write `out/junit.xml` from a results.json summary; return its path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / JUNIT_NAME
    tree = ET.ElementTree(junit_tree(summary))
    ET.indent(tree, space="  ")
    tmp = path.with_suffix(".xml.tmp")
    tree.write(tmp, encoding="utf-8", xml_declaration=True)
    tmp.replace(path)
    return path


def junit_tree(summary: Summary) -> ET.Element:
    """The `<testsuites>` element: totals on the root, one suite per method."""
    root = ET.Element("testsuites", name=xml_text(f"conformance {summary.get('provider', '')}"))
    by_method: dict[str, list[Check]] = {}
    for check in iter_checks(summary):
        by_method.setdefault(check.owner, []).append(check)
    for method, checks in by_method.items():
        root.append(suite(method, checks, summary))
    _count(root, [c for checks in by_method.values() for c in checks], summary)
    return root


def suite(method: str, checks: list[Check], summary: Summary) -> ET.Element:
    element = ET.Element("testsuite", name=xml_text(method))
    _count(element, checks, summary)
    props = ET.SubElement(element, "properties")
    for key in ("provider", "profile", "seed"):
        ET.SubElement(props, "property", name=key, value=xml_text(summary.get(key)))
    for check in checks:
        element.append(testcase(check, known_deviation(summary, check.name)))
    return element


def _count(element: ET.Element, checks: list[Check], summary: Summary | None = None) -> None:
    """tests/failures/errors/skipped/time attributes, as JUnit readers expect them (a known
    deviation of a gated run counts as skipped)."""
    known = {c.name for c in checks if summary and known_deviation(summary, c.name)}
    element.set("tests", str(len(checks)))
    element.set("failures", str(sum(c.status == "failed" and c.name not in known for c in checks)))
    element.set("errors", str(sum(c.status == "error" and c.name not in known for c in checks)))
    element.set(
        "skipped", str(sum(c.status == "not_applicable" or c.name in known for c in checks))
    )
    element.set("time", f"{sum(c.duration for c in checks):.3f}")


def testcase(check: Check, known: str | None = None) -> ET.Element:
    case = ET.Element(
        "testcase",
        classname=xml_text(check.owner),
        name=xml_text(check.name),
        time=f"{check.duration:.3f}",
    )
    if known is not None and check.status in ("failed", "error"):
        skipped = ET.SubElement(case, "skipped", message=xml_text(f"{known} — {check.message}"))
        skipped.text = xml_text(_body(check))
    elif check.status == "failed":
        failure = ET.SubElement(
            case, "failure", message=xml_text(check.message), type=xml_text(check.kind)
        )
        failure.text = xml_text(_body(check))
    elif check.status == "error":
        error = ET.SubElement(case, "error", message=xml_text(check.message), type="spec-error")
        error.text = xml_text(_body(check))
    elif check.status == "not_applicable":
        ET.SubElement(case, "skipped", message=xml_text(check.message or "not applicable"))
    return case


def _body(check: Check) -> str:
    """The failure text: the message, then the reproduction as the spec's scenario YAML."""
    repro = repro_yaml(check.repro)
    if not repro:
        return check.message
    return (
        f"{check.message}\n\nreproduction (conformance replay {repro_file(check.name)}):\n{repro}"
    )
