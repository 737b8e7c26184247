"""Minimizing a reproduction: every call and step left is one the failure needs."""

from __future__ import annotations

from typing import Any

import pytest
from broken_providers import LOGOUT, WrongCode
from conformance_providers.reference import ReferenceProvider

from conformance.engine.replay import minimize, predicted_expects, replay
from conformance.spec.catalog import Catalog, load_catalog


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def logout(target: str, expect: str) -> dict[str, Any]:
    return {"method": LOGOUT, "call": {"this": "A1", "targetId": target}, "expect": expect}


PADDED = {
    "check": "vds-iscsi::stateful::machine",
    "given": [],
    "calls": [
        {"given": [{"initiator_adapter": "A1"}]},
        {"given": [{"target": "T1"}]},
        {"given": [{"target": "T2"}]},
        {"given": [{"session": "S1", "target": "T1"}]},
        logout("T1", "S_OK"),
        logout("T1", "VDS_E_ISCSI_SESSION_NOT_FOUND"),
        logout("T2", "VDS_E_ISCSI_SESSION_NOT_FOUND"),
    ],
}


def test_a_padded_failure_keeps_only_what_it_needs(catalog: Catalog) -> None:
    assert not replay(PADDED, catalog, WrongCode()).passed
    small = minimize(PADDED, catalog, WrongCode())
    assert small["calls"] == [
        {"given": [{"initiator_adapter": "A1"}]},
        {"given": [{"target": "T1"}]},
        logout("T1", "VDS_E_ISCSI_SESSION_NOT_FOUND"),
    ]
    # still a reproduction: it fails the broken provider and passes the reference
    assert not replay(small, catalog, WrongCode()).passed
    assert replay(small, catalog, ReferenceProvider()).passed


def test_expects_are_predicted_again_for_the_shorter_sequence(catalog: Catalog) -> None:
    """Taking out the session makes the logout's documented code change."""
    repro = {
        "calls": [{"given": [{"initiator_adapter": "A1"}, {"target": "T1"}]}, logout("T1", "S_OK")]
    }
    assert (
        predicted_expects(repro, catalog)["calls"][-1]["expect"] == "VDS_E_ISCSI_SESSION_NOT_FOUND"
    )


def test_a_reproduction_the_provider_passes_is_left_alone(catalog: Catalog) -> None:
    assert minimize(PADDED, catalog, ReferenceProvider()) == PADDED


def test_a_failure_that_needs_every_entry_is_unchanged(catalog: Catalog) -> None:
    needed = {
        "calls": [
            {"given": [{"initiator_adapter": "A1"}]},
            {"given": [{"target": "T2"}]},
            logout("T2", "VDS_E_ISCSI_SESSION_NOT_FOUND"),
        ]
    }
    assert minimize(needed, catalog, WrongCode()) == needed
