"""The iscsi-discovery family as a whole (iscsidsc.h, A and W forms).

Three claims: every method conforms on the reference with every documented code passing; the
family's stateful machine can draw the sequences that tie its methods together, and they pass
on the reference; and a provider broken only *between* methods passes every check of a single
method yet fails the family machine, which shrinks it to a short reproduction.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conformance_providers.reference import ReferenceProvider
from hypothesis import HealthCheck, Phase, find, settings
from hypothesis import strategies as st

from conformance.cli import main
from conformance.engine.kinds import Target, kinds_for
from conformance.engine.replay import replay
from conformance.engine.scenarios import check_scenario
from conformance.engine.sequence_run import check_sequences
from conformance.engine.stateful import check_stateful
from conformance.engine.strategies import Pool, draw_new_step, param_strategy
from conformance.engine.subject import Subject
from conformance.engine.verdict import PASSED, Settings, Verdict
from conformance.engine.world import OUT
from conformance.provider import Outcome, Provider, Unsupported
from conformance.spec.catalog import Catalog, load_catalog
from conformance.spec.domain import Domain
from conformance.spec.model import Spec
from conformance.spec.paths import default_specs_dir

pytestmark = pytest.mark.slow  # whole runs and processes: left out of the fast loop

FAMILY = "iscsi-discovery"
SPECS = default_specs_dir() / "iscsi"
METHODS = [
    "AddIScsiStaticTargetW", "AddIScsiStaticTargetA",
    "RemoveIScsiStaticTargetW", "RemoveIScsiStaticTargetA",
    "ReportIScsiPersistentLoginsW", "ReportIScsiPersistentLoginsA",
    "RemoveIScsiPersistentTargetW", "RemoveIScsiPersistentTargetA",
    "LoginIScsiTargetW", "LoginIScsiTargetA",
    "LogoutIScsiTarget",
]  # fmt: skip
MACHINE = f"{FAMILY}::stateful::machine"
ERROR_SUCCESS = "ERROR_SUCCESS"
ISCSI_ANY_INITIATOR_PORT = ISCSI_ALL_INITIATOR_PORTS = 0xFFFFFFFF


# -- the family's specs, loaded once -----------------------------------------------------------


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    """Only this family's specs, so a half-written spec of another family cannot break it."""
    return load_catalog([SPECS])


@pytest.fixture(scope="module")
def domain(catalog: Catalog) -> Domain:
    return catalog.domains[FAMILY]


def subjects(catalog: Catalog, provider: Provider, config: Settings) -> dict[str, Subject]:
    """One Subject per method, A forms linked to their W twins for the variants check."""
    domain = catalog.domains[FAMILY]
    observable = tuple(c for c in provider.capabilities()["observe"] if c in domain.collections)
    out = {
        spec.id: Subject(spec, domain, catalog.codes, provider, observable, config)
        for spec in catalog.specs.values()
        if spec.family == FAMILY
    }
    for subject in out.values():
        subject.twin = out.get(subject.spec.twin or "") if subject.spec.charset == "ansi" else None
    return out


# -- every method conforms on the reference ---------------------------------------------------


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One `conformance run --profile ci` over the family, shared by the tests below."""
    out = tmp_path_factory.mktemp("iscsi-reference")
    keyword = " or ".join([*METHODS, FAMILY])
    code = main(
        [
            "run",
            "--profile",
            "ci",
            "--specs",
            str(SPECS),
            "-k",
            keyword,
            "--out",
            str(out),
            "--in-process",
        ]
    )
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    return {"exit": code, "results": results}


def test_the_reference_run_conforms(reference_run: dict[str, Any]) -> None:
    assert reference_run["exit"] == 0
    assert set(reference_run["results"]["methods"]) == set(METHODS)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_conforms_with_every_documented_code_passing(
    method: str, reference_run: dict[str, Any], catalog: Catalog
) -> None:
    result = reference_run["results"]["methods"][method]
    documented = [c.symbol for c in catalog.specs[method].codes]
    failing = [c for c in result["checks"] if c["status"] != "passed"]
    assert result["verdict"] == "conforms", failing
    assert {c: result["codes"].get(c) for c in documented} == dict.fromkeys(documented, "pass")
    kinds = {c["kind"] for c in result["checks"]}
    assert {"scenario", "oracle", "closed-world", "out-params"} <= kinds
    if catalog.specs[method].charset == "ansi":
        assert "variants" in kinds


def test_the_family_machine_passes_on_the_reference(reference_run: dict[str, Any]) -> None:
    (machine,) = reference_run["results"]["families"][FAMILY]["checks"]
    assert (machine["name"], machine["status"]) == (MACHINE, "passed"), machine["message"]


# -- the family's sequences: reachable by the machine, passing on the reference ---------------

Predicate = Callable[[Any], bool]
# Derandomized and not shrunk: an argument only has to be one the strategy can draw; a given
# step is shrunk to the simplest of its kind.
_DRAWN = settings(
    max_examples=500,
    database=None,
    derandomize=True,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)
_SIMPLEST = settings(_DRAWN, phases=[Phase.generate, Phase.shrink])


def _any(value: Any) -> bool:
    return True


class Walk:
    """Builds a sequence as the family machine draws one: each given step from
    `draw_new_step`, each argument from the strategy `draw_args` draws it from (one per
    parameter, independently) over the current state, the state moved on by the rules."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.domain = catalog.domains[FAMILY]
        self.state = self.domain.empty_state()
        self.given: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []
        self.outputs: list[dict[str, Any]] = []
        self._subjects = subjects(catalog, ReferenceProvider(), Settings())

    def step(self, kind: str) -> dict[str, Any]:
        """The simplest given step of `kind` that the machine's `add` rule can draw now."""
        state = self.state

        @st.composite
        def new_step(draw: Any) -> dict[str, Any] | None:
            return draw_new_step(draw, self.domain, state, {})

        step = find(
            new_step(), lambda s: s is not None and next(iter(s)) == kind, settings=_SIMPLEST
        )
        step = self.domain.complete(step)
        self.domain.apply(self.state, step)
        self.given.append(step)
        return step

    def call(self, method: str, expect: str, **wanted: Predicate) -> dict[str, Any]:
        """Arguments the machine's `call` rule can draw now (the simplest that satisfy
        `wanted`), for which the rules predict `expect`."""
        spec = self.catalog.specs[method]
        pool = Pool.of(self.domain, self.state)
        args = {
            p.name: find(
                param_strategy(spec, self.domain, p, pool),
                wanted.get(p.name, _any),
                settings=_DRAWN,
            )
            for p in spec.params
        }
        predicted = self._subjects[method].oracle.predict(self.state, args)
        assert predicted.codes == (expect,), (method, args, predicted.codes)
        self.state = predicted.state
        self.outputs.append(predicted.outputs)
        call = {k: v for k, v in args.items() if v != OUT}
        self.calls.append({"method": method, "call": call, "expect": expect})
        return args

    def replay_on(self, provider: Provider) -> tuple[bool, str]:
        result = replay({"given": self.given, "calls": self.calls}, self.catalog, provider)
        return result.passed, result.message


def _is(value: Any) -> Predicate:
    return lambda drawn: drawn == value and type(drawn) is type(value)


def test_login_persistent_report_remove_report_is_reachable_and_passes(catalog: Catalog) -> None:
    walk = Walk(catalog)
    initiator = walk.step("initiator")["initiator"]
    target = walk.step("static_target")
    assert target["hidden"] is False
    name = target["target_name"]
    walk.call(
        "LoginIScsiTargetW",
        ERROR_SUCCESS,
        TargetName=_is(name),
        InitiatorInstance=_is(initiator),
        InitiatorPortNumber=_is(ISCSI_ANY_INITIATOR_PORT),
        IsPersistent=_is(True),
    )
    walk.call("ReportIScsiPersistentLoginsW", ERROR_SUCCESS, PersistentLoginInfo=_is(OUT))
    walk.call(
        "RemoveIScsiPersistentTargetW",
        ERROR_SUCCESS,
        InitiatorInstance=_is(initiator),
        InitiatorPortNumber=_is(ISCSI_ALL_INITIATOR_PORTS),
        TargetName=_is(name),
    )
    walk.call("ReportIScsiPersistentLoginsW", ERROR_SUCCESS, PersistentLoginInfo=_is(OUT))
    reported = [out.get("PersistentLoginInfo") for out in walk.outputs]
    assert [None if r is None else [i["TargetName"] for i in r] for r in reported] == [
        None,
        [name],
        None,
        [],
    ]
    assert walk.replay_on(ReferenceProvider()) == (True, "4 call(s) behave as documented")


def test_add_remove_remove_static_target_is_reachable_and_passes(catalog: Catalog) -> None:
    walk = Walk(catalog)
    added = walk.call("AddIScsiStaticTargetW", ERROR_SUCCESS)["TargetName"]
    assert [t["target_name"] for t in walk.state["static_targets"]] == [added]
    walk.call("RemoveIScsiStaticTargetW", ERROR_SUCCESS, TargetName=_is(added))
    # The name is no longer in the state, so the machine can only draw it as a fresh string:
    # the simplest AddIScsiStaticTarget added the simplest one.
    walk.call("RemoveIScsiStaticTargetW", "ISDSC_TARGET_NOT_FOUND", TargetName=_is(added))
    assert walk.state["static_targets"] == []
    assert walk.replay_on(ReferenceProvider()) == (True, "3 call(s) behave as documented")


# -- a provider broken only between methods ---------------------------------------------------


class StaticTargetsReportedAsLogins(ReferenceProvider):
    """Files each target AddIScsiStaticTarget adds in the table it keeps persistent logins in
    (the two share a "save target data" path), so ReportIScsiPersistentLogins lists it too.

    Each method alone behaves: AddIScsiStaticTarget changes only the static list, and
    ReportIScsiPersistentLogins reports exactly the logins of any state the given steps build.
    Only AddIScsiStaticTarget followed by ReportIScsiPersistentLogins shows the mix-up. Wraps
    the reference through the provider contract only.
    """

    name = "static-targets-reported-as-logins"

    def reset(self) -> None:
        super().reset()
        self._added: list[str] = []

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        outcome = super().call(method_id, args)
        if outcome.hresult != 0:
            return outcome
        if method_id.startswith("AddIScsiStaticTarget"):
            self._added.append(args["TargetName"])
        elif method_id.startswith("RemoveIScsiStaticTarget"):
            self._added = [n for n in self._added if n != args["TargetName"]]
        elif method_id.startswith("ReportIScsiPersistentLogins") and self._added:
            return self._with_added_targets(outcome)
        return outcome

    def _with_added_targets(self, outcome: Outcome) -> Outcome:
        infos = outcome.outputs.get("PersistentLoginInfo")
        if infos is None:  # a size query: nothing listed
            return outcome
        blank = {"SymbolicName": "", "Address": "", "Socket": 0}
        infos = infos + [
            {"TargetName": name, "InitiatorInstance": "",
             "InitiatorPortNumber": ISCSI_ANY_INITIATOR_PORT, "TargetPortal": blank}
            for name in self._added
        ]  # fmt: skip
        return Outcome(0, {"Count": len(infos), "PersistentLoginInfo": infos}, None)


def single_method_verdicts(catalog: Catalog, provider: Provider) -> dict[str, Verdict]:
    """Every check of one method: its one-call scenarios and its property checks (oracle,
    closed-world, out-params, and repeat or variants where they apply), on a small budget."""
    config = Settings(seed=0)
    verdicts: dict[str, Verdict] = {}
    for method, subject in subjects(catalog, provider, config).items():
        spec: Spec = subject.spec
        for scenario in spec.scenarios:
            if not scenario.calls:
                verdicts[f"{method}::scenario::{scenario.name}"] = check_scenario(subject, scenario)
        for kind in kinds_for(spec, config):
            verdicts[f"{method}::{kind.name}"] = kind.run(Target(subject, catalog=catalog))
    return verdicts


def test_the_broken_provider_passes_every_check_of_a_single_method(catalog: Catalog) -> None:
    verdicts = single_method_verdicts(catalog, StaticTargetsReportedAsLogins())
    failed = {name: v.message for name, v in verdicts.items() if v.status != PASSED}
    assert not failed
    assert {name.split("::")[0] for name in verdicts} == set(METHODS)


def test_the_specs_call_sequences_do_not_catch_it_either(catalog: Catalog) -> None:
    """The `calls:` scenarios never put a ReportIScsiPersistentLogins after an
    AddIScsiStaticTarget, so only the family machine is left to find the mix-up."""
    provider = StaticTargetsReportedAsLogins()
    sequences = [
        (spec, scenario)
        for spec in catalog.specs.values()
        for scenario in spec.scenarios
        if scenario.calls
    ]
    assert len(sequences) >= 4
    for spec, scenario in sequences:
        repro = {"method": spec.id, "given": list(scenario.given), "calls": list(scenario.calls)}
        result = replay(repro, catalog, provider)
        assert result.passed, f"{spec.id}: {scenario.name}: {result.message}"


@pytest.mark.parametrize("check", ["planned", "explored"])
def test_only_the_family_check_catches_it_with_a_short_reproduction(
    check: str, catalog: Catalog, record_property: Callable[[str, object], None]
) -> None:
    """The planned sequences pair every change with every method that reports what it sees,
    so they catch it on every run; exploring, the hypothesis machine (50 runs, seeded) finds
    it too and is shrunk to the same two calls."""
    provider = StaticTargetsReportedAsLogins()
    family = list(subjects(catalog, provider, Settings(machine_runs=50, seed=0)).values())
    verdict = (
        check_sequences(family, catalog.domains[FAMILY])
        if check == "planned"
        else check_stateful(family, catalog.domains[FAMILY])
    )
    assert verdict.status == "failed"
    assert "ReportIScsiPersistentLogins" in verdict.message
    assert verdict.repro is not None
    calls = [entry for entry in verdict.repro["calls"] if "given" not in entry]
    print(
        f"{MACHINE}: shrunk reproduction of {len(calls)} calls: "
        + " -> ".join(entry["method"] for entry in calls)
    )
    record_property("shrunk_reproduction_calls", len(calls))
    # Two calls is the least that can show it (each call alone behaves); the harness takes out
    # every call the shrunk sequence does not need, so that is what is left.
    methods = [c["method"].rstrip("AW") for c in calls]
    assert len(calls) == 2
    assert methods[-1] == "ReportIScsiPersistentLogins"
    assert set(methods[:-1]) == {"AddIScsiStaticTarget"}
    # The reproduction is a replayable scenario: it still fails this provider, not the reference.
    assert replay(verdict.repro, catalog, provider).passed is False
    assert replay(verdict.repro, catalog, ReferenceProvider()).passed is True


def test_specs_folder_holds_the_whole_family() -> None:
    assert sorted(p.stem for p in Path(SPECS).glob("*.yaml")) == sorted(METHODS)


# -- the reference's conventions the specs rely on --------------------------------------------


def _login_args(target: str, initiator: str | None, persistent: bool) -> dict[str, Any]:
    return {
        "TargetName": target, "IsInformationalSession": False, "InitiatorInstance": initiator,
        "InitiatorPortNumber": ISCSI_ANY_INITIATOR_PORT, "TargetPortal": None,
        "SecurityFlags": 0, "Mappings": None, "LoginOptions": None, "KeySize": 0, "Key": None,
        "IsPersistent": persistent,
    }  # fmt: skip


def test_objects_calls_create_are_known_by_their_target_name() -> None:
    """The domain's convention for objects a call creates; given steps' ids never collide."""
    p = ReferenceProvider()
    p.reset()
    initiator = p.setup({"initiator": "I1"})
    given = p.setup({"static_target": "ST1", "target_name": "iqn.x:given"})
    assert given != "iqn.x:given"
    add = {
        "TargetName": "iqn.x:added",
        "TargetAlias": None,
        "TargetFlags": 0,
        "Persist": True,
        "Mappings": None,
        "LoginOptions": None,
        "PortalGroup": None,
    }
    assert p.call("AddIScsiStaticTargetW", add).hresult == 0
    assert [row["id"] for row in p.observe("static_targets")] == [given, "iqn.x:added"]
    login = p.call("LoginIScsiTargetW", _login_args("iqn.x:given", initiator, persistent=True))
    assert login.hresult == 0 and login.outputs["UniqueSessionId"]
    assert [(r["id"], r["port"]) for r in p.observe("persistent_targets")] == [
        ("iqn.x:given", None)
    ]


def test_a_null_initiator_instance_is_not_simulated() -> None:
    """Which initiator the service would select is not documented: the reference declines."""
    p = ReferenceProvider()
    p.reset()
    p.setup({"static_target": "ST1", "target_name": "iqn.x"})
    with pytest.raises(Unsupported):
        p.call("LoginIScsiTargetW", _login_args("iqn.x", None, persistent=False))
