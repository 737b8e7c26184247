"""A `then` is compared wherever a call has one: a reproduction's single call, and each entry
of a sequence of `calls` (a spec's multi-call scenario is replayed as one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from broken_providers import LOGOUT, NoStateChange
from conformance_providers.reference import ReferenceProvider
from support import TESTS, cli, results

from conformance.engine.replay import replay
from conformance.spec.catalog import Catalog, load_catalog

GIVEN = [
    {"initiator_adapter": "A1"},
    {"target": "T1"},
    {"session": "S1", "target": "T1"},
]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def logout(then: dict[str, Any] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "method": LOGOUT,
        "call": {"this": "A1", "targetId": "T1"},
        "expect": "S_OK",
    }
    return {**entry, "then": then} if then is not None else entry


def test_a_single_calls_then_is_compared(catalog: Catalog) -> None:
    right = {"given": GIVEN, **logout({"sessions": []})}
    assert replay(right, catalog, ReferenceProvider()).passed
    wrong = {"given": GIVEN, **logout({"sessions": ["S1"]})}
    result = replay(wrong, catalog, ReferenceProvider())
    assert not result.passed
    assert "sessions after the call: expected ['S1'], provider has []" in result.message


def test_each_entry_of_a_sequence_has_its_then_compared(catalog: Catalog) -> None:
    sequence = {
        "given": GIVEN,
        "calls": [
            logout({"sessions": []}),
            {"given": [{"session": "S2", "target": "T1"}]},
            logout({"sessions": [{"target": "T1"}]}),  # S2 is gone after the second logout too
        ],
    }
    result = replay(sequence, catalog, ReferenceProvider())
    assert not result.passed
    assert result.message.startswith(f"call 2 ({LOGOUT}): sessions after the call: no object")
    sequence["calls"][2] = logout({"sessions": []})
    assert replay(sequence, catalog, ReferenceProvider()).passed


def test_a_then_of_objects_matches_on_the_keys_written(catalog: Catalog) -> None:
    first = {"given": GIVEN[:2], "calls": [logout({"sessions": []})]}
    first["calls"][0]["expect"] = "VDS_E_ISCSI_SESSION_NOT_FOUND"
    assert replay(first, catalog, ReferenceProvider()).passed
    kept = {
        "given": [*GIVEN, {"target": "T2"}, {"session": "S2", "target": "T2"}],
        "calls": [logout({"sessions": [{"target": "T2"}]})],
    }
    assert replay(kept, catalog, ReferenceProvider()).passed
    kept["calls"][0]["then"] = {"sessions": [{"target": "T1"}]}
    assert "no object like {'target': 'T1'}" in replay(kept, catalog, ReferenceProvider()).message


@pytest.mark.slow
def test_a_scenario_failing_its_then_writes_a_reproduction_that_keeps_it(
    catalog: Catalog, tmp_path: Path
) -> None:
    """Replaying the reproduction judges what the scenario judged: without its `then` a
    provider that leaves the sessions in place could replay as fixed."""
    out = tmp_path / "out"
    cli(
        "run",
        "--provider",
        f"{TESTS / 'broken_providers.py'}:NoStateChange",
        "-k",
        "LogoutFromTarget and scenario",
        "--out",
        str(out),
        "--regressions",
        str(tmp_path / "r"),
        "--in-process",
    )
    checks = results(out)["methods"][LOGOUT]["checks"]
    failed = [c for c in checks if c["status"] == "failed" and "then" in (c["repro"] or {})]
    assert failed, [c["message"] for c in checks]
    for check in failed:
        assert "sessions after the call" in check["message"]
        assert not replay(check["repro"], catalog, NoStateChange()).passed
        assert replay(check["repro"], catalog, ReferenceProvider()).passed
