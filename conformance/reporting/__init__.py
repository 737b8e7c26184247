"""Reports: writers fed from one run's results.json summary.

report.html is for the person who must fix the provider; junit.xml and allure-results/ are
for CI dashboards; the baseline (`conformance.reporting.baseline`) is for the merge gate. All
of them read the same summary, so they always agree. Reporting depends on the results format, the
spec model (for the pages a contract came from) and, of the engine, only the shapes it reads:
operation counts (`engine.operations`) and reproductions (`engine.repro`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conformance.reporting.allure import render_allure_report, write_allure_results
from conformance.reporting.html import write_html
from conformance.reporting.junit import write_junit
from conformance.reporting.model import run_versions, spec_sources, with_check_codes
from conformance.reporting.shapes import Summary

__all__ = [
    "render_allure_report",
    "run_versions",
    "spec_sources",
    "with_check_codes",
    "write_allure_results",
    "write_html",
    "write_junit",
    "write_reports",
]


def write_reports(
    summary: Summary, out: Path, specs: dict[str, dict[str, Any]] | None = None
) -> list[Path]:
    """Write report.html, junit.xml and allure-results/ into `out`; return their paths.

    Per-check codes missing from an older summary are read back from `out/results.jsonl`.
    """
    summary = with_check_codes(summary, out / "results.jsonl")
    return [
        write_html(summary, out, specs),
        write_junit(summary, out),
        write_allure_results(summary, out, specs),
    ]
