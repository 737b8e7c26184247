"""The baseline gate: known deviations pass, new ones, stale ones and expired ones do not.

Summaries are built by hand: the gate reads only names and statuses, and a table of cases
is clearer than runs of broken providers.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from conformance.reporting.baseline import (
    Baseline,
    Entry,
    apply_baseline,
    load_baseline,
    write_baseline,
)
from conformance.spec.source import SourceError

TODAY = dt.date(2025, 6, 1)
OK = "IFoo::Bar::scenario::works"
BROKEN = "IFoo::Bar::oracle::property"
NA = "IFoo::Bar::closed-world::property"


def summary(**statuses: str) -> dict[str, Any]:
    """A one-method summary; keyword `check_name=status` with `__` for `::`."""
    checks = [
        {
            "name": name.replace("__", "::"),
            "kind": "scenario",
            "status": status,
            "message": f"{status} message",
            "repro": None,
        }
        for name, status in statuses.items()
    ]
    totals = {"passed": 0, "failed": 0, "not_applicable": 0, "errors": 0}
    key = {
        "passed": "passed",
        "failed": "failed",
        "not_applicable": "not_applicable",
        "error": "errors",
    }
    for c in checks:
        totals[key[c["status"]]] += 1
    return {
        "schema": 1,
        "provider": "p",
        "totals": totals,
        "methods": {
            "IFoo::Bar": {
                "verdict": "fails",
                "family": "f",
                "codes": {"S_OK": "pass"},
                "checks": checks,
            }
        },
    }


def n(name: str) -> str:
    return name.replace("::", "__")


def baseline(
    known: tuple[str, ...] = (), flaky: tuple[str, ...] = (), expires: dt.date | None = None
) -> Baseline:
    return Baseline(
        "b.yaml",
        tuple(Entry(c, "why", expires, i + 2) for i, c in enumerate(known)),
        tuple(Entry(c, "races", None, 9) for c in flaky),
    )


# -- the exit-code table --------------------------------------------------------------------


def test_all_pass_is_0() -> None:
    assert apply_baseline(summary(**{n(OK): "passed"}), baseline(), TODAY).exit_code == 0


def test_a_new_failure_is_1() -> None:
    outcome = apply_baseline(summary(**{n(OK): "passed", n(BROKEN): "failed"}), baseline(), TODAY)
    assert outcome.exit_code == 1
    assert outcome.new_failures == [BROKEN]
    assert any(BROKEN in line and "new failure" in line for line in outcome.lines())


def test_a_spec_error_not_listed_is_a_new_failure() -> None:
    outcome = apply_baseline(summary(**{n(OK): "passed", n(BROKEN): "error"}), baseline(), TODAY)
    assert (outcome.exit_code, outcome.new_failures) == (1, [BROKEN])


def test_a_known_failure_is_0() -> None:
    outcome = apply_baseline(
        summary(**{n(OK): "passed", n(BROKEN): "failed"}), baseline(known=(BROKEN,)), TODAY
    )
    assert outcome.exit_code == 0
    assert [e.check for e in outcome.known_failures] == [BROKEN]
    assert outcome.new_failures == []


def test_a_stale_entry_is_1_and_named() -> None:
    outcome = apply_baseline(
        summary(**{n(OK): "passed", n(BROKEN): "passed"}), baseline(known=(BROKEN,)), TODAY
    )
    assert outcome.exit_code == 1
    assert [e.check for e in outcome.stale] == [BROKEN]
    assert any(
        BROKEN in line and "now passes" in line and "b.yaml:2" in line
        for line in outcome.lines("b.yaml")
    )


def test_an_expired_entry_is_1_even_while_it_still_fails() -> None:
    run = summary(**{n(OK): "passed", n(BROKEN): "failed"})
    outcome = apply_baseline(run, baseline(known=(BROKEN,), expires=dt.date(2025, 5, 31)), TODAY)
    assert outcome.exit_code == 1
    assert [e.check for e in outcome.expired] == [BROKEN]
    assert any("expired on 2025-05-31" in line for line in outcome.lines())


def test_an_entry_is_valid_through_its_expiry_day() -> None:
    run = summary(**{n(OK): "passed", n(BROKEN): "failed"})
    assert apply_baseline(run, baseline(known=(BROKEN,), expires=TODAY), TODAY).exit_code == 0


def test_no_checks_is_not_0() -> None:
    assert apply_baseline(summary(), baseline(), TODAY).exit_code != 0
    only_na = summary(**{n(NA): "not_applicable"})
    outcome = apply_baseline(only_na, baseline(known=(NA,)), TODAY)
    assert outcome.exit_code != 0 and "no check ran" in outcome.lines()[-1]


# -- beyond the five rows -------------------------------------------------------------------


def test_not_applicable_and_untested_do_not_fail_as_in_a_plain_run() -> None:
    run = summary(**{n(OK): "passed", n(NA): "not_applicable"})
    run["methods"]["IFoo::Bar"]["codes"]["E_FAIL"] = "untested"
    assert apply_baseline(run, baseline(), TODAY).exit_code == 0
    outcome = apply_baseline(run, baseline(known=(NA,)), TODAY)
    assert outcome.exit_code == 0 and outcome.stale == [], "not applicable is not passing"
    assert [e.check for e in outcome.known_failures] == [NA]


def test_flaky_failures_are_reported_apart_and_retried() -> None:
    run = summary(**{n(OK): "passed", n(BROKEN): "failed"})
    flaky = baseline(flaky=(BROKEN,))
    outcome = apply_baseline(run, flaky, TODAY)
    assert outcome.exit_code == 0
    assert [e.check for e in outcome.flaky_failures] == [BROKEN]
    assert outcome.stale == [] and outcome.new_failures == []
    passing = summary(**{n(OK): "passed", n(BROKEN): "passed"})
    assert apply_baseline(passing, flaky, TODAY).exit_code == 0, "a passing flaky is not stale"


def test_entries_of_unselected_checks_are_not_run_not_stale() -> None:
    outcome = apply_baseline(summary(**{n(OK): "passed"}), baseline(known=(BROKEN,)), TODAY)
    assert outcome.exit_code == 0
    assert [e.check for e in outcome.not_run] == [BROKEN]


# -- the file -------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "baseline.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_a_valid_baseline(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""baseline: 1
known:
  - check: {BROKEN}
    reason: firmware 2.1 answers E_FAIL
    expires: 2025-09-30
  - check: {NA}
    reason: no fault injection on this array
    expires: "2025-10-01"
flaky:
  - {{check: {OK}, reason: cache refresh races}}
""",
    )
    loaded = load_baseline(path)
    assert [(e.check, e.expires, e.line) for e in loaded.known] == [
        (BROKEN, dt.date(2025, 9, 30), 3),
        (NA, dt.date(2025, 10, 1), 6),
    ]
    assert loaded.flaky[0].reason == "cache refresh races"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("known: []\n", 1, "`baseline: 1` is required"),
        ("baseline: 2\nknown: []\n", 1, "`baseline: 1` is required"),
        (
            "baseline: 1\nknown:\n  - check: IFoo::Bar::oracle::property\n",
            3,
            "`reason` is required",
        ),
        ("baseline: 1\nknown:\n  - reason: x\n    check: not-a-check-name\n", 4, "stable name"),
        (
            "baseline: 1\nknown:\n  - check: IFoo::Bar::oracle::property\n    reason: x\n"
            "    expires: next week\n",
            5,
            "`expires` must be a date",
        ),
        (
            "baseline: 1\nknown:\n  - check: IFoo::Bar::oracle::property\n    reason: x\n"
            "    expiry: 2025-01-01\n",
            5,
            "unknown key 'expiry'",
        ),
        ("baseline: 1\nknown: {check: x}\n", 2, "must be a list"),
        ("baseline: 1\nknwon: []\n", 2, "unknown key 'knwon'"),
        (
            "baseline: 1\nknown:\n  - {check: A::b::c, reason: x}\n  - {check: A::b::c, "
            "reason: y}\n",
            4,
            "listed twice (first at line 3)",
        ),
        ("baseline: 1\nknown: [\n", 3, "invalid YAML"),
        ("- just a list\n", 1, "a baseline is a mapping"),
    ],
)
def test_a_malformed_baseline_names_file_line_and_fix(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SourceError) as error:
        load_baseline(path)
    shown = str(error.value)
    assert f"{path}:{line}:" in shown, shown
    assert words in shown, shown


def test_a_missing_baseline_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot read"):
        load_baseline(tmp_path / "nope.yaml")


def test_write_baseline_then_the_same_run_passes_the_gate(tmp_path: Path) -> None:
    run = summary(**{n(OK): "passed", n(BROKEN): "failed", n(NA): "not_applicable"})
    path = write_baseline(run, tmp_path / "baseline.yaml")
    loaded = load_baseline(path)
    assert {e.check: e.reason for e in loaded.known} == {BROKEN: "TODO: why"}
    assert all(e.expires is None for e in loaded.known)
    assert apply_baseline(run, loaded, TODAY).exit_code == 0


def test_write_baseline_keeps_reasons_expiry_and_flaky_of_the_old_one(tmp_path: Path) -> None:
    old = Baseline(
        "b.yaml",
        (Entry(BROKEN, "firmware bug", dt.date(2026, 1, 1)), Entry(NA, "gone now")),
        (Entry(OK, "races"),),
    )
    run = summary(**{n(OK): "failed", n(BROKEN): "failed"})
    loaded = load_baseline(write_baseline(run, tmp_path / "baseline.yaml", keep=old))
    assert [(e.check, e.reason, e.expires) for e in loaded.known] == [
        (BROKEN, "firmware bug", dt.date(2026, 1, 1))
    ]
    assert [e.check for e in loaded.flaky] == [OK]


def test_family_level_checks_are_gated_too(tmp_path: Path) -> None:
    run = summary(**{n(OK): "passed"})
    machine = "fam::stateful::machine"
    run["families"] = {
        "fam": {
            "verdict": "fails",
            "checks": [{"name": machine, "kind": "stateful", "status": "failed", "message": "m"}],
        }
    }
    run["totals"]["failed"] += 1
    assert apply_baseline(run, baseline(), TODAY).new_failures == [machine]
    loaded = load_baseline(write_baseline(run, tmp_path / "baseline.yaml"))
    assert [e.check for e in loaded.known] == [machine]
    assert apply_baseline(run, loaded, TODAY).exit_code == 0
