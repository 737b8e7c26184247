"""The vds-iscsi family as a whole: IVdsIscsiInitiatorAdapter and IVdsIscsiPortalGroup.

Every method must conform on the reference with every documented code exercised; the family's
stateful machine must be able to draw the sequences that only several calls show (add, remove,
remove again; log in, log out, log out again; delete, then call the deleted group), and a
provider whose bug needs two different methods to show must pass every single-call check yet
fail the machine.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from conformance_providers.reference import ReferenceProvider
from conformance_providers.reference._vds import VDS_E_OBJECT_DELETED, VdsWorld, guid_key
from conformance_providers.reference._world import direct
from support import ROOT

from conformance.cli import main
from conformance.engine.oracle import Oracle
from conformance.engine.scenarios import scenario_args
from conformance.engine.strategies import Pool
from conformance.engine.verdict import slug
from conformance.provider import Outcome
from conformance.spec.catalog import Catalog, load_catalog
from conformance.spec.domain import ANY, Domain
from conformance.spec.model import Scenario, Spec

SPECS = ROOT / "specs" / "vds"
FAMILY = "vds-iscsi"
MACHINE = f"{FAMILY}::stateful::machine"
SEED = "1"
METHODS = [
    *(
        f"IVdsIscsiInitiatorAdapter::{m}"
        for m in ("GetProperties", "QueryInitiatorPortals", "LoginToTarget", "LogoutFromTarget")
    ),
    *(
        f"IVdsIscsiPortalGroup::{m}"
        for m in (
            "GetProperties",
            "GetTarget",
            "QueryAssociatedPortals",
            "AddPortal",
            "RemovePortal",
            "Delete",
        )
    ),
]
# (spec, scenario name): the family sequences the issue names, as `calls:` scenarios.
SEQUENCES = [
    ("IVdsIscsiPortalGroup::RemovePortal", "add, remove, remove again"),
    ("IVdsIscsiInitiatorAdapter::LogoutFromTarget", "log in, log out, log out again"),
    ("IVdsIscsiPortalGroup::Delete", "every call on a deleted group answers that it is gone"),
]

GROUP = "IVdsIscsiPortalGroup::"
DELETE = GROUP + "Delete"


class _TombstoningVdsWorld(VdsWorld):
    """Delete keeps deleted groups in a tombstone list that Delete and the enumeration of
    groups consult, but leaves the group's own record (its target) in place, which is all the
    group object's other methods look at."""

    def reset(self) -> None:
        super().reset()
        self._tombstones: set[str] = set()

    def _delete(self, args: Mapping[str, Any]) -> Outcome:
        key = guid_key(args["this"]) or ""
        if key in self._tombstones:
            return direct(VDS_E_OBJECT_DELETED, {"ppAsync": None})
        group = self._groups.get(key)
        target = group.target if group else None
        outcome = super()._delete(args)
        if group is not None and group.target is None:
            group.target = target
            self._tombstones.add(key)
        return outcome

    def observe(self, collection: str) -> list[dict[str, Any]]:
        rows = super().observe(collection)
        for row in rows if collection == "portal_groups" else []:
            row["target"] = None if row["id"] in self._tombstones else row["target"]
        return rows


class StaleDeletedGroupProvider(ReferenceProvider):
    """After IVdsIscsiPortalGroup::Delete succeeds, the caller's pointer still works: the
    group's other methods answer as if it existed, instead of VDS_E_OBJECT_DELETED.

    Every call alone behaves as the reference (no `given` step makes a tombstone), and so does
    each method called twice (a second Delete sees the tombstone); only Delete followed by
    another method of the same group shows the bug.
    """

    def __init__(self) -> None:
        super().__init__()
        # The reference routes by world; put the broken VDS world in the VDS one's place.
        self._worlds = tuple(
            _TombstoningVdsWorld() if isinstance(w, VdsWorld) else w for w in self._worlds
        )
        self._by_step, self._by_fault = self._index("steps"), self._index("faults")
        self._by_method, self._by_collection = self._index("methods"), self._index("collections")


def run(out: Path, *args: str) -> tuple[int, dict[str, Any]]:
    """`conformance run` on the family's specs; its exit code and results.json."""
    code = main(
        [
            "run",
            "--specs",
            str(SPECS),
            "--seed",
            SEED,
            "--out",
            str(out),
            "--in-process",
            "--regressions",
            str(out / "regressions"),
            *args,
        ]
    )
    return code, json.loads((out / "results.json").read_text(encoding="utf-8"))


def checks_of(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every check of a run by name, family-level ones included."""
    found = {c["name"]: c for m in results["methods"].values() for c in m["checks"]}
    for family in results.get("families", {}).values():
        found.update({c["name"]: c for c in family["checks"]})
    return found


def failures(results: dict[str, Any]) -> list[str]:
    return [
        f"{n}: {c['message']}" for n, c in checks_of(results).items() if c["status"] != "passed"
    ]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog([SPECS])


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, Any]]:
    return run(tmp_path_factory.mktemp("vds-reference"), "--profile", "quick")


# -- the reference conforms ---------------------------------------------------------------------


def test_the_family_has_a_spec_per_method(catalog: Catalog) -> None:
    family = sorted(s.id for s in catalog.specs.values() if s.family == FAMILY)
    assert family == sorted(METHODS)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_conforms_on_the_reference(
    method: str, catalog: Catalog, reference_run: tuple[int, dict[str, Any]]
) -> None:
    code, results = reference_run
    assert code == 0, failures(results)
    entry = results["methods"][method]
    documented = [c.symbol for c in catalog.specs[method].codes]
    assert entry["verdict"] == "conforms"
    assert {c: entry["codes"].get(c) for c in documented} == {c: "pass" for c in documented}
    assert {c["kind"] for c in entry["checks"]} >= {
        "scenario",
        "oracle",
        "closed-world",
        "out-params",
    }


def test_the_family_machine_passes_on_the_reference(
    reference_run: tuple[int, dict[str, Any]],
) -> None:
    _, results = reference_run
    assert checks_of(results)[MACHINE]["status"] == "passed"


# -- the family sequences: drawable by the machine, passing on the reference ---------------------


def _drawable_step(domain: Domain, state: dict[str, Any], step: dict[str, Any]) -> None:
    """The machine makes an object only with references to objects that exist."""
    for key, ftype in domain.fields_of_step(step).items():
        if ftype.kind == "ref" and key in step:
            pools = state.values() if ftype.ref == ANY else [state[ftype.ref or ""]]
            assert any(step[key] in [o.get("id") for o in objs] for objs in pools), step


def _drawable_call(
    domain: Domain,
    state: dict[str, Any],
    removed: dict[str, list[str]],
    spec: Spec,
    call: dict[str, Any],
) -> None:
    """The machine draws `this` and every reference argument from `Pool.of(state, removed)`:
    each object the call names must be in that pool when the call comes."""
    pool = Pool.of(domain, state, removed)
    assert spec.this_object and call["this"] in pool.names[spec.this_object], (spec.id, call)
    for param in spec.in_params:
        value = call.get(param.name)
        if param.refers and isinstance(value, str) and value not in param.special:
            drawable = pool.names.get(param.refers, []) + pool.removed.get(param.refers, [])
            assert value in drawable, (spec.id, param.name, value, drawable)


def _after(
    catalog: Catalog, domain: Domain, spec: Spec, state: dict[str, Any], call: dict[str, Any]
) -> dict[str, Any]:
    """The state the rules predict after the call (the machine's next state)."""
    args = scenario_args(spec, Scenario("step", (), dict(call), ()))
    return Oracle(spec, catalog.codes).predict(state, args).state


@pytest.mark.parametrize("method, name", SEQUENCES)
def test_the_machine_can_draw_each_family_sequence(
    catalog: Catalog, method: str, name: str
) -> None:
    """Walk the sequence as the machine would: objects are only ever made from what exists,
    and each call's objects are in the pool the machine draws from at that point (objects a
    call removed stay drawable, as the machine keeps them)."""
    domain = catalog.domains[FAMILY]
    scenario = next(s for s in catalog.specs[method].scenarios if s.name == name)
    state, removed = domain.empty_state(), {}
    for step in scenario.given:
        _drawable_step(domain, state, step)
        domain.apply(state, domain.complete(step))
    methods = set()
    for entry in scenario.calls:
        called = catalog.specs[entry.get("method") or method]
        _drawable_call(domain, state, removed, called, entry["call"])
        methods.add(called.id)
        after = _after(catalog, domain, called, state, entry["call"])
        for coll in domain.collections.values():
            still = {o["id"] for o in after[coll.name]}
            removed.setdefault(coll.step, []).extend(
                o["id"] for o in state[coll.name] if o["id"] not in still
            )
        state = after
    assert len(methods) >= 2, "a family sequence crosses methods"


@pytest.mark.parametrize("method, name", SEQUENCES)
def test_each_family_sequence_passes_on_the_reference(
    method: str, name: str, reference_run: tuple[int, dict[str, Any]]
) -> None:
    _, results = reference_run
    check = checks_of(results)[f"{method}::scenario::{slug(name)}"]
    assert check["status"] == "passed", check["message"]


# -- a bug only a cross-method sequence shows ---------------------------------------------------


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, Any]]:
    """The checks that compare codes and states (scenarios, oracle, repeat) of the portal group
    methods, whose behaviour the provider changes, and the family machine, on the broken
    provider, with the reference run's seed and budget."""
    provider = f"{Path(__file__).resolve()}:StaleDeletedGroupProvider"
    return run(
        tmp_path_factory.mktemp("vds-broken"),
        "--provider",
        provider,
        "--profile",
        "ci",
        "-k",
        "IVdsIscsiPortalGroup and (scenario or oracle or repeat) or stateful",
    )


def _scenario_of(catalog: Catalog, check: str) -> tuple[str, Scenario]:
    method, _, case = check.rpartition("::scenario::")
    return method, next(s for s in catalog.specs[method].scenarios if slug(s.name) == case)


def _single_call(check: dict[str, Any], catalog: Catalog) -> bool:
    """A check that makes one call per case: not the machine, not a `calls:` scenario."""
    if check["kind"] in ("stateful", "scenario"):
        return check["kind"] == "scenario" and not _scenario_of(catalog, check["name"])[1].calls
    return True


def test_the_broken_provider_passes_every_single_call_check(
    catalog: Catalog, broken_run: tuple[int, dict[str, Any]]
) -> None:
    _, results = broken_run
    single = {n: c for n, c in checks_of(results).items() if _single_call(c, catalog)}
    assert {c["kind"] for c in single.values()} == {"scenario", "oracle", "repeat"}
    assert [f"{n}: {c['message']}" for n, c in single.items() if c["status"] != "passed"] == []


def test_only_cross_method_sequences_catch_the_broken_provider(
    catalog: Catalog,
    broken_run: tuple[int, dict[str, Any]],
    record_property: Callable[[str, object], None],
) -> None:
    """The family check's planned sequences (a Delete, then another method of the group)
    find it on every run; so do the spec's own `calls:` scenarios across methods."""
    code, results = broken_run
    failed = {n: c for n, c in checks_of(results).items() if c["status"] != "passed"}
    assert code == 1 and MACHINE in failed
    for name in failed.keys() - {MACHINE}:  # the other catchers: `calls:` across methods
        method, scenario = _scenario_of(catalog, name)
        assert {e.get("method", method) for e in scenario.calls if "call" in e} != {method}
    machine = failed[MACHINE]
    calls = [c for c in machine["repro"]["calls"] if "method" in c]
    print(
        f"\n{MACHINE} shrunk to {len(calls)} calls: "
        + " -> ".join(f"{c['method']} ({c['expect']})" for c in calls)
    )
    record_property("shrunk_reproduction_calls", len(calls))
    assert len(calls) == 2 and calls[0]["method"] == DELETE
    assert calls[1]["method"].startswith(GROUP)
    assert calls[1]["call"]["this"] == calls[0]["call"]["this"]
    assert calls[1]["expect"] == "VDS_E_OBJECT_DELETED"
