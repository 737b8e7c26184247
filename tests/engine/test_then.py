"""A `then` is compared wherever a call has one: a reproduction's single call, and each entry
of a sequence of `calls` (a spec's multi-call scenario is replayed as one)."""

from __future__ import annotations

from typing import Any

import pytest
from broken_providers import LOGOUT
from conformance_providers.reference import ReferenceProvider

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
