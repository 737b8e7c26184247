"""results.json and the reproductions keep to their declared shapes (`reporting/shapes.py`,
`engine/repro.py`): every key a real run writes is declared, with a value of the declared
type, and every required key is there.

One small real run (`conformance run` in-process, quick profile) writes them: its provider's
LogoutFromTarget leaves the sessions in place, so the method's scenarios of one call and of
several `calls` and its oracle check fail, and so does the vds-iscsi family's check (a
sequence with steps between its calls); iscsi-discovery's family check passes (a check under
`families`). The run is gated by a baseline and compared with an older run, so `gate` and
`comparison` are in its results.json too.
"""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints, is_typeddict

import pytest
import yaml
from support import TESTS, catalog_parsed_once, cli

from conformance.engine import regressions
from conformance.engine.replay import load_repro
from conformance.engine.repro import CallRepro, Repro, Saved, SequenceRepro
from conformance.reporting.shapes import MethodEntry, Summary

PROVIDER = f"{TESTS / 'broken_providers.py'}:NoStateChange"
SELECTED = "LogoutFromTarget or vds-iscsi and machine or iscsi-discovery and machine"
LOGOUT = "IVdsIscsiInitiatorAdapter::LogoutFromTarget"
KNOWN = f"{LOGOUT}::oracle::property"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run's output folder."""
    tmp = tmp_path_factory.mktemp("shapes")
    baseline = tmp / "baseline.yaml"
    baseline.write_text(
        yaml.safe_dump(
            {
                "baseline": 1,
                "known": [
                    {"check": KNOWN, "reason": "leaves sessions", "expires": "2999-01-01"},
                    {"check": "IVMGuestOS::Logoff::oracle::property", "reason": "not selected"},
                ],
            }
        ),
        encoding="utf-8",
    )
    old = tmp / "old"
    old.mkdir()
    (old / "results.json").write_text(
        json.dumps({"schema": 1, "methods": {LOGOUT: {"verdict": "conforms", "codes": {}}}}),
        encoding="utf-8",
    )
    out = tmp / "out"
    with catalog_parsed_once():
        code, stdout, stderr = cli(
            *("run", "--provider", PROVIDER, "--in-process", "--out", str(out)),
            *("--profile", "quick", "--seed", "1", "-k", SELECTED),
            *("--baseline", str(baseline), "--compare", str(old)),
        )
    assert code == 1, stdout + stderr  # new failures beside the known one
    return out


def mismatches(value: Any, hint: Any, where: str) -> list[str]:
    """How `value` departs from the type `hint`: keys a TypedDict does not declare, required
    keys missing, values of another type; [] when it keeps to it."""
    if hint is Any:
        return []
    if is_typeddict(hint):
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__}, not a {hint.__name__}"]
        declared = hint.__required_keys__ | hint.__optional_keys__
        out = [
            f"{where}: {k!r} is not declared in {hint.__name__}" for k in value if k not in declared
        ]
        out += [
            f"{where}: {hint.__name__}'s required {k!r} is missing"
            for k in sorted(hint.__required_keys__)
            if k not in value
        ]
        hints = get_type_hints(hint)
        for key in value.keys() & declared:
            out += mismatches(value[key], hints[key], f"{where}.{key}")
        return out
    origin, args = get_origin(hint), get_args(hint)
    if origin in (types.UnionType, typing.Union):
        tries = [mismatches(value, alternative, where) for alternative in args]
        return [] if [] in tries else min(tries, key=len)
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: {type(value).__name__}, not a list"]
        return [p for i, v in enumerate(value) for p in mismatches(v, args[0], f"{where}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__}, not a mapping"]
        return [p for k, v in value.items() for p in mismatches(v, args[1], f"{where}[{k!r}]")]
    if hint is type(None):
        return [] if value is None else [f"{where}: {value!r}, not None"]
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, hint)
    return [] if ok else [f"{where}: {value!r}, not {hint.__name__}"]


def repros(summary: dict[str, Any]) -> list[dict[str, Any]]:
    groups = [*summary["methods"].values(), *summary["families"].values()]
    return [c["repro"] for g in groups for c in g["checks"] if c["repro"] is not None]


def test_results_json_keeps_to_its_shape(run: Path) -> None:
    summary = json.loads((run / "results.json").read_text(encoding="utf-8"))
    assert mismatches(summary, Summary, "results.json") == []
    # the run wrote every part the shapes declare, so the check above saw each of them
    assert {"gate", "comparison", "plan"} <= summary.keys() and summary["plan"] is not None
    assert summary["methods"][LOGOUT]["plan"] and summary["families"]["vds-iscsi"]["plan"]
    assert summary["families"]["iscsi-discovery"]["checks"]  # a family-level check
    assert any(c["details"] for c in summary["methods"][LOGOUT]["checks"])
    assert summary["gate"]["known"] and summary["gate"]["not_run"]
    assert summary["comparison"]["methods"][LOGOUT]["verdict"] == ["conforms", "fails"]


def test_every_reproduction_keeps_to_its_shape(run: Path) -> None:
    summary = json.loads((run / "results.json").read_text(encoding="utf-8"))
    shown = repros(summary)
    files = [load_repro(path) for path in sorted((run / "repro").glob("*.yaml"))]
    assert len(files) == len(shown)
    for repro in [*shown, *files]:
        assert mismatches(repro, Repro, repro["check"]) == []
    # both shapes, and a sequence with steps between its calls, are among them
    calls = [r for r in shown if "calls" in r]
    assert any("call" in r for r in shown) and calls
    assert any("given" in e for r in calls for e in r["calls"])
    assert any("method" not in e and "call" in e for r in calls for e in r["calls"])


def test_a_saved_regression_keeps_to_its_shape(run: Path, tmp_path: Path) -> None:
    summary = json.loads((run / "results.json").read_text(encoding="utf-8"))
    for repro in repros(summary):
        path = regressions.save(tmp_path, repro["check"], repro, "p", 1, "found")
        saved = regressions.load_one(path).repro
        assert mismatches(saved, Saved, path.name) == []


def test_a_key_that_is_not_declared_or_a_missing_one_is_caught() -> None:
    """The checks above can fail: made-up departures from each shape are named."""
    call: CallRepro = {"given": [], "call": {"this": "A1"}, "expect": "S_OK"}
    assert mismatches(call, Repro, "r") == []
    assert mismatches({**call, "when": "x"}, Repro, "r") == [
        "r: 'when' is not declared in CallRepro"
    ]
    sequence: SequenceRepro = {"given": [], "calls": [{"call": {}, "expect": ["S_OK", "S_FALSE"]}]}
    assert mismatches(sequence, Repro, "r") == []
    wrong = {"given": [], "calls": [{"call": {}, "expected": "S_OK"}]}
    assert "r.calls[0]: 'expected' is not declared in CallEntry" in mismatches(wrong, Repro, "r")
    assert mismatches({"given": [{"target": "T1"}]}, Repro, "r") == [
        "r: SequenceRepro's required 'calls' is missing"
    ]
    method: MethodEntry = {"verdict": "conforms", "family": "f", "codes": {}, "checks": []}
    assert mismatches(method, MethodEntry, "m") == []
    assert mismatches({**method, "checks": [{"name": "n"}]}, MethodEntry, "m")[0] == (
        "m.checks[0]: MethodCheckEntry's required 'codes' is missing"
    )
    no_verdict = {k: v for k, v in method.items() if k != "verdict"}
    assert mismatches(no_verdict, MethodEntry, "m") == [
        "m: MethodEntry's required 'verdict' is missing"
    ]
    assert mismatches({"seed": "1"}, Summary, "s")[0].startswith("s: Summary's required")
    assert "s.seed: '1', not int" in mismatches({"seed": "1"}, Summary, "s")
