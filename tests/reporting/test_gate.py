"""A gate gives the same verdict every time: sequences by plan, exploration apart, what it
finds saved and replayed, baselines that agree in every report, the fix loop.

Runs go through `conformance.cli.main.main` in-process, in a folder of their own (regressions are
kept beside where a run starts), and read what a user reads.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import TESTS, catalog_parsed_once, cli, inside, results

pytestmark = pytest.mark.slow  # whole runs and processes: left out of the fast loop

HERE = TESTS
BROKEN = HERE / "broken_providers.py"
STALE = f"{HERE / 'engine' / 'test_family_vds.py'}:StaleDeletedGroupProvider"
VDS = "vds-iscsi or IVdsIscsiPortalGroup.Delete.yaml"  # the family check and one method
MACHINE = "vds-iscsi::stateful::machine"
FAMILY_CHECKS = "vds-iscsi and stateful"  # the family check (a scenario makes five calls)


@pytest.fixture(scope="module", autouse=True)
def _catalog_parsed_once() -> Iterator[None]:
    with catalog_parsed_once():
        yield


def check_named(summary: dict[str, Any], name: str) -> dict[str, Any]:
    """A check wherever results.json keeps it (a family check that failed is filed under the
    method its last call was of)."""
    groups = [*summary["methods"].values(), *summary.get("families", {}).values()]
    (found,) = [c for g in groups for c in g["checks"] if c["name"] == name]
    return found


def failing(summary: dict[str, Any]) -> list[str]:
    groups = [*summary["methods"].values(), *summary.get("families", {}).values()]
    return sorted(
        c["name"] for g in groups for c in g["checks"] if c["status"] in ("failed", "error")
    )


# -- the same verdict whatever the seed ------------------------------------------------------


@pytest.mark.slow
def test_ten_seeds_give_the_same_verdict_and_a_baseline_of_the_first_passes_the_rest(
    tmp_path: Path,
) -> None:
    """A bug only a sequence reaches (a deleted group still answering) is found by the planned
    sequences on every run, whatever the seed."""
    seen = []
    baseline = tmp_path / "baseline.yaml"
    for seed in range(10):
        out = tmp_path / f"seed{seed}"
        argv = [
            "run",
            "--provider",
            STALE,
            "--in-process",
            "--out",
            str(out),
            "-k",
            VDS,
            "--seed",
            str(seed),
        ]
        argv += ["--write-baseline", str(baseline)] if seed == 0 else ["--baseline", str(baseline)]
        code, stdout, stderr = cli(*argv)
        seen.append((failing(results(out)), results(out)["operations"]))
        if seed == 0:
            assert code == 1 and MACHINE in seen[0][0], stdout + stderr
        else:
            assert code == 0, stdout + stderr
            assert stdout.rstrip().splitlines()[-1].startswith("GATE PASSED: ")
    assert all(names == seen[0][0] for names, _ in seen)
    assert all(ops == seen[0][1] for _, ops in seen)  # the same operations too


# -- exploration finds, the regression keeps it found ----------------------------------------


def test_a_bug_only_exploration_reaches_is_saved_replayed_and_then_reported_fixed(
    tmp_path: Path,
) -> None:
    fifth = f"{BROKEN}:FifthCallFails"
    with inside(tmp_path):
        # the plan alone cannot reach it: no planned sequence makes five calls
        code, _, _ = cli(
            "run", "--provider", fifth, "--in-process", "--out", "plain", "-k", FAMILY_CHECKS
        )
        assert code == 0, "the planned family check passes"
        code, _, stderr = cli(
            "run",
            "--provider",
            fifth,
            "--in-process",
            "--out",
            "explored",
            "-k",
            FAMILY_CHECKS,
            "--explore",
            "20",
            "--seed",
            "5",
        )
        assert code == 1
        assert "exploring with --seed 5" in stderr
        found = {c["name"]: c for c in results(Path("explored"))["families"]["vds-iscsi"]["checks"]}
        assert found[MACHINE]["status"] == "passed"  # exploration never decides the plan's
        explore = found["vds-iscsi::stateful::explore"]
        assert explore["status"] == "failed"
        assert "saved as" in explore["message"] and "E_UNEXPECTED" in explore["message"]
        (saved,) = sorted(Path(".conformance/regressions").glob("*.yaml"))
        data = yaml.safe_load(saved.read_text(encoding="utf-8"))
        assert data["check"] == MACHINE and data["seed"] == 5 and data["provider"] == fifth
        assert len([c for c in data["calls"] if "method" in c]) == 5
        # the next run, without exploring, fails on it, under the planned check's name
        code, stdout, _ = cli(
            "run", "--provider", fifth, "--in-process", "--out", "again", "-k", FAMILY_CHECKS
        )
        assert code == 1
        check = check_named(results(Path("again")), MACHINE)
        assert check["status"] == "failed"
        assert check["message"].startswith(f"regression {saved.name} (found ")
        # fixed: it passes and says so; the file stays until someone removes it
        code, _, _ = cli(
            "run", "--provider", "reference", "--in-process", "--out", "fixed", "-k", FAMILY_CHECKS
        )
        assert code == 0
        (check,) = results(Path("fixed"))["families"]["vds-iscsi"]["checks"]
        assert "1 saved regression now passes (fixed: " in check["message"]
        assert check["regressions"] == [
            {"file": saved.name, "status": "fixed", "message": check["regressions"][0]["message"]}
        ]
        assert saved.exists()
        code, stdout, _ = cli("regressions", "--provider", fifth)
        assert code == 1 and "[still fails]" in stdout and MACHINE in stdout
        code, stdout, _ = cli("regressions", "--provider", "reference", "--json")
        assert code == 0 and json.loads(stdout)[0]["status"] == "fixed"


def test_a_broken_regression_file_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "regressions"
    folder.mkdir()
    (folder / "bad.yaml").write_text("check: nothing\ncall: {}\n", encoding="utf-8")
    code, _, stderr = cli(
        "run",
        "--out",
        str(tmp_path / "out"),
        "--in-process",
        "--regressions",
        str(folder),
        "-k",
        "Logoff.yaml",
    )
    assert code == 2 and f"{folder / 'bad.yaml'}: `check` must name" in stderr


# -- a gate that agrees everywhere ------------------------------------------------------------


def test_known_failures_are_skipped_in_junit_and_allure_and_the_gate_line_is_last(
    tmp_path: Path,
) -> None:
    broken = f"{BROKEN}:WrongCode"
    keyword = "IVdsIscsiInitiatorAdapter.LogoutFromTarget.yaml"
    baseline = tmp_path / "baseline.yaml"
    cli(
        "run",
        "--provider",
        broken,
        "--in-process",
        "--out",
        str(tmp_path / "first"),
        "-k",
        keyword,
        "--write-baseline",
        str(baseline),
    )
    out = tmp_path / "gated"
    code, stdout, _ = cli(
        "run",
        "--provider",
        broken,
        "--in-process",
        "--out",
        str(out),
        "-k",
        keyword,
        "--baseline",
        str(baseline),
    )
    known = failing(results(tmp_path / "first"))
    assert code == 0 and known
    assert stdout.rstrip().splitlines()[-1] == f"GATE PASSED: {len(known)} known failures, 0 new"
    gate = results(out)["gate"]
    assert gate["passed"] and sorted(k["check"] for k in gate["known"]) == known
    root = ET.parse(out / "junit.xml").getroot()
    assert root.get("failures") == "0" and int(root.get("skipped") or 0) >= len(known)
    for case in root.iter("testcase"):
        if case.get("name") in known:
            assert case.find("failure") is None and case.find("skipped") is not None
            assert "known deviation" in (case.find("skipped").get("message") or "")
    allure = [
        json.loads(p.read_text(encoding="utf-8"))
        for p in (out / "allure-results").glob("*-result.json")
    ]
    statuses = {r["name"]: r["status"] for r in allure}
    assert {statuses[name] for name in known} == {"skipped"}
    html = (out / "report.html").read_text(encoding="utf-8")
    assert f"GATE PASSED: {len(known)} known failures, 0 new" in html


# -- the fix loop and the comparison ---------------------------------------------------------


def test_rerun_failed_runs_only_what_failed_and_diff_says_what_changed(tmp_path: Path) -> None:
    broken = f"{BROKEN}:WrongCode"
    keyword = "IVdsIscsiInitiatorAdapter.LogoutFromTarget.yaml or RemovePortal.yaml"
    full, again, fixed = tmp_path / "full", tmp_path / "again", tmp_path / "fixed"
    cli("run", "--provider", broken, "--in-process", "--out", str(full), "-k", keyword)
    code, _, stderr = cli(
        "run",
        "--provider",
        broken,
        "--in-process",
        "--out",
        str(again),
        "--rerun-failed",
        str(full),
        "--regressions",
        str(tmp_path / "none"),
    )
    assert code == 1 and "re-running 7 check(s)" in stderr
    before, after = results(full), results(again)
    names = [c["name"] for m in after["methods"].values() for c in m["checks"]]
    assert sorted(names) == failing(before) and len(names) < sum(
        len(m["checks"]) for m in before["methods"].values()
    )
    assert after["operations"]["total"] < before["operations"]["total"]
    print(
        f"--rerun-failed: {len(names)} checks, {after['operations']['total']} operations; "
        f"the full run: {sum(len(m['checks']) for m in before['methods'].values())} checks, "
        f"{before['operations']['total']} operations"
    )
    cli(
        "run",
        "--provider",
        "reference",
        "--in-process",
        "--out",
        str(fixed),
        "--rerun-failed",
        str(full),
        "--compare",
        str(full),
    )
    code, stdout, _ = cli("diff", str(full), str(fixed))
    assert code == 0 and f"newly passing ({len(failing(before))}):" in stdout
    code, stdout, _ = cli("diff", str(fixed), str(full), "--json")
    diff = json.loads(stdout)
    assert code == 1 and diff["newly_failing"] == failing(before)
    method = diff["methods"]["IVdsIscsiInitiatorAdapter::LogoutFromTarget"]
    assert method["verdict"] == ["conforms", "fails"]
    assert method["codes"]["VDS_E_ISCSI_SESSION_NOT_FOUND"] == ["pass", "fail"]
    comparison = results(fixed)["comparison"]
    assert comparison["newly_passing"] == failing(before)
    assert 'id="comparison-table"' in (fixed / "report.html").read_text(encoding="utf-8")


def test_thorough_explores_every_method_steered_to_unseen_codes(tmp_path: Path) -> None:
    """Exploring with steering on (thorough) judges each drawn case by every exploring kind
    and steers once per case."""
    code, _, stderr = cli(
        "run",
        "--profile",
        "thorough",
        "--seed",
        "2",
        "--in-process",
        "--out",
        str(tmp_path / "out"),
        "--regressions",
        str(tmp_path / "regressions"),
        "-k",
        "Logoff.yaml and explore",
    )
    assert code == 0, stderr
    (check,) = [c for m in results(tmp_path / "out")["methods"].values() for c in m["checks"]]
    assert check["status"] == "passed"
    assert check["message"].startswith("200 drawn cases (--seed 2), judged by oracle")
