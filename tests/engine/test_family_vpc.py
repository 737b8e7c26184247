"""The virtual-pc family as a whole: every IVMGuestOS method and failing property.

The reference conforms to every spec of the family, the family's stateful machine can draw the
cross-method sequences that matter (Shutdown then Logoff, Restart then IsUserLoggedOn,
SetParameter then GetParameter) and they pass on the reference, and a provider broken so that
no single call shows it fails the family's machine, shrunk to a short reproduction.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conformance_providers.reference import ReferenceProvider
from hypothesis import HealthCheck, find, settings
from hypothesis import strategies as st
from support import ROOT, catalog_parsed_once

from conformance.cli import main
from conformance.engine.replay import replay
from conformance.engine.stateful import callable_subjects
from conformance.engine.strategies import Pool, draw_args, state_of
from conformance.engine.subject import Subject
from conformance.engine.verdict import Settings, slug
from conformance.engine.world import OUT
from conformance.provider import Outcome
from conformance.spec import catalog as catalog_module
from conformance.spec.catalog import Catalog
from conformance.spec.model import Spec

SPECS = ROOT / "specs"
# win32metadata does not cover Virtual PC: its codes are checked against this page instead.
VPC_CODES_PAGE = (
    SPECS.parent.parent
    / "shared"
    / "docs"
    / "win32_hresult-codes-specific-to-windows-virtual-pc.md"
)
FAMILY = "virtual-pc"
MACHINE = f"{FAMILY}::stateful::machine"
METHODS = (
    "GetOsVersionInfo",
    "GetParameter",
    "InstallIntegrationComponents",
    "IsUserLoggedOn",
    "Logoff",
    "Restart",
    "SetParameter",
    "Shutdown",
)
# Every property whose page lists return codes (ProductType's lists none: see its findings).
PROPERTIES = (
    "CanShutdown",
    "ComputerName",
    "CSDVersion",
    "HeartbeatPercentage",
    "IntegrationComponentsVersion",
    "IsHeartbeating",
    "IsHostTimeSyncEnabled",
    "MultipleUserSessionsAllowed",
    "OSBuildNumber",
    "OSMajorVersion",
    "OSMinorVersion",
    "OSName",
    "OSPlatformId",
    "OSVersion",
    "ProductType",
    "ScreenLocked",
    "ServicePackMajor",
    "ServicePackMinor",
    "SuiteMask",
    "TerminalServerPort",
    "TerminalServicesInitialized",
)
FAMILY_IDS = sorted(
    [f"IVMGuestOS::{m}" for m in METHODS]
    + [f"IVMGuestOS::get_{p}" for p in PROPERTIES]
    + ["IVMGuestOS::put_IsHostTimeSyncEnabled"]
)


class MemoizedGuestQueries(ReferenceProvider):
    """Answers every guest property of a VM with the first answer it got for that VM.

    A cache of guest-property reads keyed by the VM alone, the property name left out of the
    key. Every single call (a fresh world each) reads right, and so does reading one property
    twice; a second, different property of the same VM gets the first one's code and value.
    Only a sequence of two different methods shows it.
    """

    def reset(self) -> None:
        super().reset()
        self._memo: dict[Any, Outcome] = {}

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        outcome = super().call(method_id, args)
        null_pointer = any(v is None for k, v in args.items() if k != "this")
        if "::get_" not in method_id or null_pointer:
            return outcome
        first = self._memo.setdefault(args["this"], outcome)
        (name,) = outcome.outputs  # the property's one [out, retval]
        return Outcome(first.hresult, {name: next(iter(first.outputs.values()))}, None)


BROKEN = f"{Path(__file__).resolve()}:{MemoizedGuestQueries.__name__}"


# -- running the CLI once per question ----------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _catalog_parsed_once() -> Iterator[None]:
    with catalog_parsed_once():
        yield


Run = Callable[[str, str], dict[str, Any]]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """`conformance run --profile quick` over the family's specs, in-process, seeded: its
    exit code, results.json and the checks of results.jsonl, shared by the tests."""
    done: dict[tuple[str, str], dict[str, Any]] = {}

    def get(provider: str, keyword: str) -> dict[str, Any]:
        key = (provider, keyword)
        if key not in done:
            out = tmp_path_factory.mktemp("run")
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
                "--specs",
                str(SPECS / FAMILY),
                "-k",
                keyword,
                "--in-process",
            ]
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                code = main(argv)
            results = json.loads((out / "results.json").read_text(encoding="utf-8"))
            stream = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
            events = [json.loads(line) for line in stream]
            done[key] = {
                "exit": code,
                **results,
                "stream": [e for e in events if e.get("event") == "check"],
            }
        return done[key]

    return get


def family_catalog() -> Catalog:
    """The family's specs (parsed once per module by the fixture above)."""
    return catalog_module.load_catalog([SPECS / FAMILY])


def single_call_checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Scenario and oracle checks, less the scenarios that are sequences (`calls:`)."""
    sequences = {
        f"{spec.id}::scenario::{slug(scenario.name)}"
        for spec in family_catalog().specs.values()
        for scenario in spec.scenarios
        if scenario.calls
    }
    return [
        c
        for c in results["stream"]
        if c["kind"] in ("scenario", "oracle") and c["name"] not in sequences
    ]


def machine_check(results: dict[str, Any]) -> dict[str, Any]:
    """The machine's result from results.jsonl (results.json files it under the method its
    reproduction ends on, and under no method when it passes)."""
    found = [c for c in results["stream"] if c["name"] == MACHINE]
    assert found, f"{MACHINE} not in results.jsonl"
    return found[0]


# -- the reference conforms ---------------------------------------------------------------------

# Scenario and oracle checks of every method, and the family's machine.
EVERYTHING = "IVMGuestOS and (scenario or oracle) or virtual and stateful"


def test_the_family_specs_every_ivmguestos_method_and_failing_property() -> None:
    specs = family_catalog().specs
    assert sorted(s for s in specs if specs[s].family == FAMILY) == FAMILY_IDS


@pytest.mark.skipif(not VPC_CODES_PAGE.is_file(), reason=f"no page at {VPC_CODES_PAGE}")
def test_every_virtual_pc_code_has_the_value_the_virtual_pc_code_list_gives() -> None:
    text = VPC_CODES_PAGE.read_text(encoding="utf-8").replace("\\_", "_")
    listed = {
        m[1]: int(m[2], 16)
        for m in re.finditer(r"\*\*(VM_E_\w+)\*\*</dt> <dt>(0x[0-9A-Fa-f]{8})</dt>", text)
    }
    assert len(listed) > 50
    used = {
        c.symbol: c.value
        for spec in family_catalog().specs.values()
        for c in spec.codes
        if c.symbol.startswith("VM_E_")
    }
    assert used and {s: listed.get(s) for s in used} == used


def test_every_method_conforms_on_the_reference_with_every_code_passing(run: Run) -> None:
    results = run("reference", EVERYTHING)
    assert results["exit"] == 0
    assert sorted(results["methods"]) == FAMILY_IDS
    specs = family_catalog().specs
    for method_id, info in results["methods"].items():
        assert info["verdict"] == "conforms", (method_id, info["verdict"])
        documented = [c.symbol for c in specs[method_id].codes]
        assert {info["codes"][c] for c in documented} == {"pass"}, (method_id, info["codes"])
        assert {c["kind"] for c in info["checks"]} == {"scenario", "oracle"}, method_id
    assert results["totals"]["failed"] == results["totals"]["errors"] == 0
    assert machine_check(results)["status"] == "passed"


# -- the cross-method sequences the family machine must reach -----------------------------------

VM1 = {"virtual_machine": "VM1", "power": "running", "additions": True, "execute_access": True}
SEQUENCES = {
    "Shutdown then Logoff": (
        [VM1, {"logon_session": "L1", "vm": "VM1"}],
        ("Shutdown", {"this": "VM1", "isForced": False}, "S_OK"),
        ("Logoff", {"this": "VM1"}, "VM_E_VM_NOT_RUNNING"),
    ),
    "Restart then IsUserLoggedOn": (
        [VM1, {"logon_session": "L1", "vm": "VM1", "kind": "rdp"}],
        ("Restart", {"this": "VM1", "inForced": False}, "S_OK"),
        ("IsUserLoggedOn", {"this": "VM1", "inRailSession": 1}, "S_OK"),
    ),
    "SetParameter then GetParameter": (
        [VM1],
        # A name no given step draws: GetParameter can only draw it from what SetParameter set.
        (
            "SetParameter",
            {"this": "VM1", "inParameterName": "ContosoAssetTag", "inParameterValue": "A-1"},
            "S_OK",
        ),
        ("GetParameter", {"this": "VM1", "inParameterName": "ContosoAssetTag"}, "S_OK"),
    ),
}


def machine_trace(given: list[dict[str, Any]], *calls: tuple[str, dict, str]) -> dict[str, Any]:
    """A reproduction in the shape the family machine writes: steps and calls, in order."""
    entries: list[dict[str, Any]] = [{"given": [step]} for step in given]
    entries += [
        {"method": f"IVMGuestOS::{m}", "call": call, "expect": expect} for m, call, expect in calls
    ]
    return {"check": MACHINE, "given": [], "calls": entries}


@pytest.mark.parametrize("name", SEQUENCES)
def test_each_sequence_passes_on_the_reference(name: str) -> None:
    given, first, second = SEQUENCES[name]
    result = replay(
        machine_trace(given, first, second), family_catalog(), ReferenceProvider(), Settings()
    )
    assert result.passed, result.message
    assert result.calls == 2


@pytest.mark.parametrize("name", SEQUENCES)
def test_the_machine_draws_each_sequence(name: str) -> None:
    """After the first call, the machine's own pool and argument drawing can make the second:
    the method is callable and its arguments (the VM, the parameter name just set) drawable."""
    catalog = family_catalog()
    domain = catalog.domains[FAMILY]
    given, (method, call, _), (second, want, _) = SEQUENCES[name]
    spec: Spec = catalog.specs[f"IVMGuestOS::{method}"]
    subject = Subject(spec, domain, catalog.codes, ReferenceProvider(), ())
    args = {p.name: call.get(p.name, OUT) for p in spec.params} | {"this": "VM1"}
    state = subject.oracle.predict(state_of(domain, given), args).state
    pool = Pool.of(domain, state)
    target = catalog.specs[f"IVMGuestOS::{second}"]
    seconds = [Subject(target, domain, catalog.codes, ReferenceProvider(), ())]
    assert callable_subjects(seconds, pool) == seconds

    @st.composite
    def second_args(draw: Callable[..., Any]) -> dict[str, Any]:
        return draw_args(draw, target, domain, pool)

    drawn = find(
        second_args(),
        lambda a: all(a.get(k) == v for k, v in want.items()),
        settings=settings(
            max_examples=2000, database=None, suppress_health_check=list(HealthCheck)
        ),
    )
    assert all(drawn[k] == v for k, v in want.items())


# -- a provider only a cross-method sequence catches --------------------------------------------


# Only the properties differ from the reference; their single-call checks, and the machine.
BROKEN_RUN = "IVMGuestOS and get_ and (scenario or oracle) or virtual and stateful"


def test_memoized_guest_queries_pass_every_single_call_check(run: Run) -> None:
    checks = single_call_checks(run(BROKEN, BROKEN_RUN))
    assert len(checks) > 2 * len(PROPERTIES)
    assert all(c["status"] == "passed" for c in checks), [
        c for c in checks if c["status"] != "passed"
    ]


def test_memoized_guest_queries_fail_the_family_machine(
    run: Run, record_property: Callable[[str, Any], None]
) -> None:
    results = run(BROKEN, BROKEN_RUN)
    machine = machine_check(results)
    assert machine["status"] == "failed", machine
    calls = [c for c in machine["repro"]["calls"] if "method" in c]
    record_property("shrunk_reproduction_calls", len(calls))
    print(
        f"{MACHINE} on {MemoizedGuestQueries.__name__}: shrunk to {len(calls)} calls: "
        f"{[c['method'] for c in calls]}"
    )
    methods = {c["method"] for c in calls}
    assert len(calls) == 2 and all("::get_" in m for m in methods), calls
    assert calls[0]["call"]["this"] == calls[1]["call"]["this"]  # the same VM
    # two different properties, or one whose answer a step between the calls changed: the
    # second answer is the first one, memoized
    between = [e for e in machine["repro"]["calls"] if "given" in e]
    assert len(methods) == 2 or (between and calls[0]["expect"] != calls[1]["expect"]), calls
    assert results["exit"] == 1
