"""The reports read the same results.json a run writes: report.html, junit.xml, allure-results.

Real runs (`conformance.cli.main.main` in-process, quick profile, one or two methods) feed the
tests that check counts; a hand-built summary full of hostile strings feeds the escaping
tests, since no real provider should be needed to prove the page is safe.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from conformance.cli import main
from conformance.reporting import allure as allure_module
from conformance.reporting import (
    render_allure_report,
    spec_sources,
    with_check_codes,
    write_allure_results,
    write_html,
    write_junit,
    write_reports,
)
from conformance.spec.catalog import load_catalog

LOGOUT = "IVdsIscsiInitiatorAdapter::LogoutFromTarget"
REMOVE_PORTAL = "IVdsIscsiPortalGroup::RemovePortal"
HOSTILE = "<script>alert(1)</script>"
QUOTES = "\"' onmouseover=x"

BROKEN_PROVIDER = f'''
"""Answers S_OK where LogoutFromTarget must say VDS_E_ISCSI_SESSION_NOT_FOUND."""
from conformance.provider import Outcome
from conformance_providers.reference import ReferenceProvider

SESSION_NOT_FOUND = 0x8004270A


class Broken(ReferenceProvider):
    def call(self, method_id, args):
        out = super().call(method_id, args)
        if method_id == {LOGOUT!r} and out.hresult == SESSION_NOT_FOUND:
            return Outcome(0, {{"ppAsync": {HOSTILE + QUOTES!r}}}, None)
        return out
'''


def run_conformance(tmp: Path, provider: str, keyword: str) -> dict[str, Any]:
    """`conformance run` in-process; the summary with per-check codes from results.jsonl."""
    out = tmp / "out"
    argv = [
        "run",
        "--provider",
        provider,
        "--out",
        str(out),
        "--profile",
        "quick",
        "--seed",
        "1",
        "--in-process",
        "-k",
        keyword,
    ]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        main(argv)
    summary = json.loads((out / "results.json").read_text(encoding="utf-8"))
    return with_check_codes(summary, out / "results.jsonl")


def broken_run(tmp: Path) -> tuple[dict[str, Any], Path]:
    """LogoutFromTarget (broken) and RemovePortal (intact), and the run's output folder."""
    provider = tmp / "broken.py"
    provider.write_text(BROKEN_PROVIDER, encoding="utf-8")
    summary = run_conformance(tmp, f"{provider}:Broken", "LogoutFromTarget or RemovePortal")
    return summary, tmp / "out"


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    return broken_run(tmp_path_factory.mktemp("broken"))


@pytest.fixture(scope="module")
def specs() -> dict[str, dict[str, Any]]:
    return spec_sources(load_catalog().specs.values())


def hostile_summary() -> dict[str, Any]:
    """A summary whose every outside string is an attack on the page."""
    evil = HOSTILE + QUOTES
    return {
        "schema": 1,
        "provider": evil,
        "profile": "quick",
        "seed": None,
        "capabilities": {"methods": [evil], "steps": [evil]},
        "totals": {"passed": 1, "failed": 1, "not_applicable": 1, "errors": 0},
        "methods": {
            f"IEvil::{evil}": {
                "verdict": "fails",
                "family": evil,
                "codes": {evil: "fail", "S_OK": "pass"},
                "checks": [
                    {
                        "name": f"IEvil::{evil}::scenario::x",
                        "kind": "scenario",
                        "status": "failed",
                        "message": evil,
                        "duration": 0.1,
                        "codes": {evil: "failed"},
                        "repro": {
                            "given": [{"target": evil}],
                            "call": {"this": evil},
                            "expect": evil,
                        },
                        "details": {
                            "expected": [f"{evil} (0x8004270A)"],
                            "actual": {
                                "hresult": f"{evil} (0x00000000)",
                                "completion": None,
                                "outputs": {evil: evil},
                            },
                            "state_before": {"targets": [{"id": evil}]},
                        },
                    },
                    {
                        "name": f"IEvil::{evil}::oracle::property",
                        "kind": "oracle",
                        "status": "passed",
                        "message": evil,
                        "duration": 0.1,
                        "codes": {"S_OK": "passed"},
                        "repro": None,
                        "details": None,
                    },
                    {
                        "name": f"IEvil::{evil}::closed-world::property",
                        "kind": "closed-world",
                        "status": "not_applicable",
                        "message": evil,
                        "duration": 0.1,
                        "repro": None,
                        "details": None,
                    },
                ],
            }
        },
    }


def hostile_specs() -> dict[str, dict[str, Any]]:
    evil = HOSTILE + QUOTES
    return {
        f"IEvil::{evil}": {
            "file": evil,
            "values": {evil: evil},
            "sources": [
                {"doc": evil, "format": evil, "lang": evil, "note": evil},
                {"doc": "page", "url": "javascript:alert(1)"},
            ],
        }
    }


class Tags(HTMLParser):
    """Every start tag and its attributes, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def count(self, tag: str, css: str) -> int:
        return sum(t == tag and css in (a.get("class") or "").split() for t, a in self.tags)


def parse(html: str) -> Tags:
    tags = Tags()
    tags.feed(html)
    return tags


# -- report.html ----------------------------------------------------------------------------


def test_matrix_has_one_row_per_method_and_a_cell_per_failed_code(
    broken: tuple[dict[str, Any], Path], specs: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    summary, _ = broken
    assert set(summary["methods"]) == {LOGOUT, REMOVE_PORTAL}
    tags = parse(write_html(summary, tmp_path, specs).read_text(encoding="utf-8"))
    assert any(t == "table" and a.get("id") == "matrix" for t, a in tags.tags)
    assert tags.count("tr", "method-row") == len(summary["methods"])
    cells = sum(len(m["codes"]) for m in summary["methods"].values())
    statuses = ("code-pass", "code-fail", "code-untested", "code-not-applicable")
    assert sum(tags.count(t, s) for t in ("a", "span") for s in statuses) == cells
    failed = [c for m in summary["methods"].values() for c, s in m["codes"].items() if s == "fail"]
    assert "VDS_E_ISCSI_SESSION_NOT_FOUND" in failed
    assert summary["methods"][REMOVE_PORTAL]["verdict"] == "conforms"
    assert tags.count("a", "code-fail") == len(failed), "each failed code links to a failure"


def test_each_failure_shows_expected_actual_repro_and_source(
    broken: tuple[dict[str, Any], Path], specs: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    summary, _ = broken
    html = write_html(summary, tmp_path, specs).read_text(encoding="utf-8")
    failed = [c for c in summary["methods"][LOGOUT]["checks"] if c["status"] == "failed"]
    assert failed
    for check in failed:
        assert f"<h3>{check['name']}</h3>" in html
    assert 'VDS_E_ISCSI_SESSION_NOT_FOUND</span> <span class="hex">0x8004270A' in html
    assert 'S_OK</span> <span class="hex">0x00000000' in html
    assert "expect: VDS_E_ISCSI_SESSION_NOT_FOUND" in html, "the reproduction as YAML"
    for source in specs[LOGOUT]["sources"]:
        assert source["doc"] in html
    assert "What the verdicts mean" in html


def test_a_conforming_run_says_so_in_one_line(tmp_path: Path) -> None:
    summary = run_conformance(tmp_path, "reference", "RemovePortal")
    html = write_html(summary, tmp_path).read_text(encoding="utf-8")
    assert re.search(r'id="verdict-line">Conforms: all \d+ selected checks passed', html)
    assert parse(html).count("tr", "method-row") == 1
    assert 'class="code code-fail' not in html


def test_hostile_strings_are_text_never_markup(tmp_path: Path) -> None:
    html = write_html(hostile_summary(), tmp_path, hostile_specs()).read_text(encoding="utf-8")
    assert HOSTILE not in html and QUOTES not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    tags = parse(html)
    assert not [t for t, _ in tags.tags if t in ("script", "iframe", "object", "embed")]
    handlers = [(t, k) for t, a in tags.tags for k in a if k.startswith("on")]
    assert not handlers, handlers
    hrefs = [a.get("href") or "" for t, a in tags.tags if t == "a"]
    assert not [h for h in hrefs if h.lower().startswith("javascript")], hrefs
    assert tags.count("tr", "method-row") == 1


def test_the_page_is_self_contained(broken: tuple[dict[str, Any], Path], tmp_path: Path) -> None:
    summary, _ = broken
    tags = parse(write_html(summary, tmp_path).read_text(encoding="utf-8"))
    assert not [t for t, _ in tags.tags if t in ("script", "link", "img", "iframe")]
    refs = [v for _, a in tags.tags for k, v in a.items() if k in ("src", "href") and v]
    assert all(r.startswith("#") for r in refs), refs


# -- junit.xml ------------------------------------------------------------------------------


def test_junit_counts_and_names(broken: tuple[dict[str, Any], Path], tmp_path: Path) -> None:
    summary, _ = broken
    root = ET.parse(write_junit(summary, tmp_path)).getroot()
    totals = summary["totals"]
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == sum(totals.values())
    assert int(root.get("tests")) == len(cases)
    assert int(root.get("failures")) == totals["failed"] == len(root.findall(".//failure")) > 0
    assert int(root.get("errors")) == totals["errors"]
    assert int(root.get("skipped")) == totals["not_applicable"]
    assert {s.get("name") for s in root.findall("testsuite")} == set(summary["methods"])
    for suite in root.findall("testsuite"):
        assert int(suite.get("tests")) == len(suite.findall("testcase"))
        assert int(suite.get("failures")) == len(suite.findall("testcase/failure"))
    names = {c.get("name") for c in cases}
    assert names == {c["name"] for m in summary["methods"].values() for c in m["checks"]}
    failure = next(c for c in cases if c.find("failure") is not None)
    assert failure.get("classname") == LOGOUT
    assert "expected VDS_E_ISCSI_SESSION_NOT_FOUND" in failure.find("failure").get("message")
    assert "given:" in failure.find("failure").text, "the reproduction is in the body"


def test_junit_of_hostile_strings_parses_back(tmp_path: Path) -> None:
    summary = hostile_summary()
    check = summary["methods"][next(iter(summary["methods"]))]["checks"][0]
    check["message"] += " \x00\x1b[31m\ud800 control characters"
    root = ET.parse(write_junit(summary, tmp_path)).getroot()
    assert len(root.findall(".//testcase")) == 3
    assert root.find(".//error") is None
    assert root.find(".//skipped").get("message") == HOSTILE + QUOTES
    assert HOSTILE in root.find(".//failure").get("message")


# -- allure-results -------------------------------------------------------------------------


def allure_results(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in folder.glob("*-result.json")]


def labels(result: dict[str, Any], name: str) -> list[str]:
    return [label["value"] for label in result["labels"] if label["name"] == name]


def test_allure_result_per_check_with_labels(
    broken: tuple[dict[str, Any], Path], tmp_path: Path
) -> None:
    summary, _ = broken
    folder = write_allure_results(summary, tmp_path)
    results = allure_results(folder)
    assert len(results) == sum(summary["totals"].values())
    by_name = {r["name"]: r for r in results}
    for method, info in summary["methods"].items():
        for check in info["checks"]:
            result = by_name[check["name"]]
            assert result["fullName"] == check["name"]
            assert labels(result, "epic") == ["vds-iscsi"]
            assert labels(result, "feature") == [method.split("::")[0]]
            assert labels(result, "story") == [method]
            assert set(check["codes"]) <= set(labels(result, "tag"))
            severity = "critical" if check["kind"] in ("oracle", "closed-world") else "normal"
            assert labels(result, "severity") == [severity]
            assert result["status"] == {"passed": "passed", "failed": "failed"}[check["status"]]


def test_allure_failure_has_steps_details_and_attachments(
    broken: tuple[dict[str, Any], Path], tmp_path: Path
) -> None:
    summary, _ = broken
    folder = write_allure_results(summary, tmp_path)
    name = f"{LOGOUT}::scenario::a-target-with-no-session"
    result = next(r for r in allure_results(folder) if r["name"] == name)
    assert result["status"] == "failed"
    assert "expected VDS_E_ISCSI_SESSION_NOT_FOUND" in result["statusDetails"]["message"]
    assert "given:" in result["statusDetails"]["trace"]
    steps = [s["name"] for s in result["steps"]]
    assert steps[0].startswith("given") and steps[1].startswith(f"call {LOGOUT}(")
    assert steps[2].startswith("then expect VDS_E_ISCSI_SESSION_NOT_FOUND")
    assert result["steps"][2]["status"] == "failed"
    assert "VDS_E_ISCSI_SESSION_NOT_FOUND" in labels(result, "tag")
    kinds = {a["name"]: a for a in result["attachments"]}
    assert {"state before the call", "reproduction"} <= set(kinds)
    for attachment in result["attachments"]:
        assert (folder / attachment["source"]).is_file()
    assert re.match(r"^[0-9a-f-]{36}-attachment\.yaml$", kinds["reproduction"]["source"])
    assert "expect: VDS_E_ISCSI_SESSION_NOT_FOUND" in (
        folder / kinds["reproduction"]["source"]
    ).read_text(encoding="utf-8")


def test_allure_results_of_an_earlier_run_are_replaced(tmp_path: Path) -> None:
    write_allure_results(hostile_summary(), tmp_path)
    summary = hostile_summary()
    method = summary["methods"][next(iter(summary["methods"]))]
    method["checks"] = method["checks"][:1]
    folder = write_allure_results(summary, tmp_path)
    assert len(allure_results(folder)) == 1
    assert (folder / "environment.properties").is_file()


def test_render_allure_report_without_node_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_allure_results(hostile_summary(), tmp_path)
    monkeypatch.setattr(allure_module.shutil, "which", lambda name: None)
    assert render_allure_report(tmp_path) == 2
    assert "npm install allure" in capsys.readouterr().err


def test_render_allure_report_without_the_package_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_allure_results(hostile_summary(), tmp_path)
    monkeypatch.setattr(allure_module, "find_allure", lambda project=None: None)
    assert render_allure_report(tmp_path) == 2
    err = capsys.readouterr().err
    assert "npm install allure" in err and "npm install -g allure" in err


@pytest.mark.skipif(
    allure_module.find_allure() is None or allure_module.shutil.which("node") is None,
    reason="the Allure 3 CLI is not installed (npm install allure)",
)
def test_render_allure_report_with_allure_3(
    broken: tuple[dict[str, Any], Path], tmp_path: Path
) -> None:
    summary, _ = broken
    write_allure_results(summary, tmp_path)
    assert render_allure_report(tmp_path) == 0
    assert (tmp_path / "allure-report" / "index.html").is_file()


# -- family-level checks (the stateful machine of a family) ---------------------------------


def family_summary() -> dict[str, Any]:
    """One passing method and a failed stateful machine that blamed no method."""
    repro = {
        "check": "fam::stateful::machine",
        "method": "",
        "given": [],
        "calls": [
            {"given": [{"target": "T1"}]},
            {"method": "IFoo::Bar", "call": {"this": "A1"}, "expect": "S_OK"},
            {"method": "IFoo::Bar", "call": {"this": "A1"}, "expect": "E_GONE"},
        ],
    }
    return {
        "schema": 1,
        "provider": "p",
        "profile": "quick",
        "seed": 3,
        "totals": {"passed": 1, "failed": 1, "not_applicable": 0, "errors": 0},
        "methods": {
            "IFoo::Bar": {
                "verdict": "conforms",
                "family": "fam",
                "codes": {"S_OK": "pass"},
                "checks": [
                    {
                        "name": "IFoo::Bar::scenario::ok",
                        "kind": "scenario",
                        "status": "passed",
                        "codes": {"S_OK": "passed"},
                        "message": "",
                    }
                ],
            }
        },
        "families": {
            "fam": {
                "verdict": "fails",
                "checks": [
                    {
                        "name": "fam::stateful::machine",
                        "kind": "stateful",
                        "status": "failed",
                        "message": "IFoo::Bar: expected E_GONE, got S_OK (after 3 steps)",
                        "repro": repro,
                        "details": {"expected": ["E_GONE (0x80070490)"]},
                        "duration": 1.0,
                    }
                ],
            }
        },
    }


def test_family_level_checks_appear_in_every_report(tmp_path: Path) -> None:
    summary = family_summary()
    html = write_html(summary, tmp_path).read_text(encoding="utf-8")
    assert "<h3>fam::stateful::machine</h3>" in html
    assert "conformance replay repro/fam-stateful-machine.yaml --provider p" in html
    assert parse(html).count("tr", "method-row") == 1, "the matrix lists methods only"
    root = ET.parse(write_junit(summary, tmp_path)).getroot()
    assert root.get("tests") == "2" and root.get("failures") == "1"
    case = root.find(".//testcase[failure]")
    assert (case.get("classname"), case.get("name")) == ("fam", "fam::stateful::machine")
    result = next(
        r
        for r in allure_results(write_allure_results(summary, tmp_path))
        if r["name"] == "fam::stateful::machine"
    )
    assert labels(result, "feature") == ["family-level"]
    assert labels(result, "story") == ["fam"] and labels(result, "severity") == ["critical"]
    steps = [(s["name"], s["status"]) for s in result["steps"]]
    assert steps == [
        ("given (1 step)", "passed"),
        ("call IFoo::Bar(this=A1)", "passed"),
        ("then expect S_OK", "passed"),
        ("call IFoo::Bar(this=A1)", "passed"),
        ("then expect E_GONE", "failed"),
    ]


# -- all together ---------------------------------------------------------------------------


def test_write_reports_reads_check_codes_from_the_stream(
    broken: tuple[dict[str, Any], Path],
) -> None:
    _, out = broken
    summary = json.loads((out / "results.json").read_text(encoding="utf-8"))
    paths = write_reports(summary, out)
    assert [p.name for p in paths] == ["report.html", "junit.xml", "allure-results"]
    html = paths[0].read_text(encoding="utf-8")
    assert re.search(r"fail · \d+ of \d+ checks", html), "counts come from results.jsonl"


def test_an_async_result_marks_the_completion_not_the_call_and_a_leak_is_marked() -> None:
    """The call's S_OK is right when the completion carries the (wrong) result; an
    out-parameter set although the call failed is what is wrong, and shown so."""
    from conformance.reporting.html import _call_code, _outputs

    actual = {"hresult": "S_OK (0x00000000)", "completion": "S_OK (0x00000000)"}
    assert _call_code(actual, ["VDS_E_ISCSI_SESSION_NOT_FOUND (0x8004270A)"])[2] == "plain"
    failed = {
        "hresult": "VDS_E_OBJECT_NOT_FOUND (0x80042405)",
        "outputs": {"ppAsync": "IVdsAsync#leaked", "other": None},
    }
    assert _outputs(failed) == [("ppAsync", "IVdsAsync#leaked", "got"), ("other", "NULL", "")]
    assert _outputs({"hresult": "S_OK (0x00000000)", "outputs": {"ppAsync": "x"}}) == [
        ("ppAsync", "x", "")
    ]
