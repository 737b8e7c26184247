"""Unit tests of the pieces every check stands on: the Outcome guard, the oracle, the
out-parameter rules and where a result arrives.

Each is tested on the bundled seed specs, so a change to a rule or to the engine that alters
a prediction shows up here with the state that exposed it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from conformance_providers.reference import ReferenceProvider

from conformance.engine.judging import effective, out_param_problem
from conformance.engine.oracle import Oracle, OracleError, ansi_function
from conformance.engine.subject import Subject
from conformance.engine.world import OUT, ProviderError, Unknown, World, check_outcome
from conformance.provider import Outcome, Provider, Unsupported
from conformance.spec.catalog import Catalog, load_catalog
from conformance.spec.domain import Domain
from conformance.spec.model import Param, Rule, Spec

LOGOUT = "IVdsIscsiInitiatorAdapter::LogoutFromTarget"
REMOVE_PORTAL = "IVdsIscsiPortalGroup::RemovePortal"
REMOVE_W = "RemoveIScsiPersistentTargetW"
REMOVE_A = "RemoveIScsiPersistentTargetA"
LOGOFF = "IVMGuestOS::Logoff"
ALL_PORTS = 0xFFFFFFFF
IQN = "iqn.1991-05.com.example:"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def spec_of(catalog: Catalog, method: str) -> Spec:
    return catalog.specs[method]


def state(domain: Domain, *steps: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The oracle state `given` steps build, as the engine builds it."""
    built = domain.empty_state()
    for step in steps:
        domain.apply(built, domain.complete(step))
    return built


@pytest.fixture(scope="module")
def oracle(catalog: Catalog) -> Callable[..., Oracle]:
    def make(method: str, code_page: str = "cp1252") -> Oracle:
        return Oracle(spec_of(catalog, method), catalog.codes, code_page)

    return make


@pytest.fixture(scope="module")
def given(catalog: Catalog) -> Callable[..., dict[str, list[dict[str, Any]]]]:
    def build(method: str, *steps: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        return state(catalog.domain_of(spec_of(catalog, method)), *steps)

    return build


# -- check_outcome: garbage from a provider becomes a message that says what to fix ------------


class Opaque:
    """Something json cannot show, so the message must fall back to repr."""

    def __repr__(self) -> str:
        return "<Opaque handle>"


GARBAGE: list[tuple[str, Any, str]] = [
    ("None", None, "call(M) returned null, not an Outcome"),
    ("tuple", (0, {}, None), "call(M) returned [0, {}, null], not an Outcome"),
    ("dict", {"hresult": 0}, 'returned {"hresult": 0}, not an Outcome'),
    ("bare int", 0, "call(M) returned 0, not an Outcome"),
    ("look-alike", SimpleNamespace(hresult=0, outputs={}, completion=None), "not an Outcome"),
    ("unserialisable", Opaque(), 'returned "<Opaque handle>", not an Outcome'),
    ("str hresult", Outcome("0"), "call(M): Outcome.hresult is '0', not an int"),
    ("None hresult", Outcome(None), "Outcome.hresult is None, not an int"),  # type: ignore[arg-type]
    ("bool hresult", Outcome(True), "Outcome.hresult is True, not an int"),
    ("float hresult", Outcome(0.0), "Outcome.hresult is 0.0, not an int"),  # type: ignore[arg-type]
    (
        "negative hresult",
        Outcome(-2147467259),
        "Outcome.hresult is negative (-2147467259); return the unsigned 32-bit value "
        "(value & 0xFFFFFFFF = 0x80004005)",
    ),
    ("wide hresult", Outcome(0x1_8004_270A), "Outcome.hresult 0x18004270A is wider than 32 bits"),
    (
        "negative completion",
        Outcome(0, {"ppAsync": "h"}, -2147211510),
        "Outcome.completion is negative (-2147211510); return the unsigned 32-bit value "
        "(value & 0xFFFFFFFF = 0x8004270A)",
    ),
    ("bool completion", Outcome(0, {}, False), "Outcome.completion is False, not an int"),
    (
        "str completion",
        Outcome(0, {}, "S_OK"),  # type: ignore[arg-type]
        "Outcome.completion is 'S_OK', not an int",
    ),
    ("wide completion", Outcome(0, {}, 2**40), "Outcome.completion 0x10000000000 is wider than"),
    ("None outputs", Outcome(0, None), "Outcome.outputs is null, not a dict"),  # type: ignore[arg-type]
    (
        "list outputs",
        Outcome(0, [("ppAsync", None)]),  # type: ignore[arg-type]
        'Outcome.outputs is [["ppAsync", null]], not a dict',
    ),
]


@pytest.mark.parametrize(
    ("garbage", "message"), [(g, m) for _, g, m in GARBAGE], ids=[n for n, _, _ in GARBAGE]
)
def test_check_outcome_refuses_garbage_saying_why(garbage: Any, message: str) -> None:
    with pytest.raises(ProviderError) as exc:
        check_outcome(garbage, "call(M)")
    assert message in str(exc.value)
    assert str(exc.value).startswith("call(M)")


def test_check_outcome_keeps_a_huge_garbage_message_short() -> None:
    with pytest.raises(ProviderError) as exc:
        check_outcome(list(range(10_000)), "call(M)")
    assert len(str(exc.value)) < 300 and "..." in str(exc.value)


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome(0),
        Outcome(0xFFFFFFFF),
        Outcome(0, {"ppAsync": "IVdsAsync#1"}, 0x80042710),
        Outcome(0x8004270A, {"ppAsync": None}, None),
    ],
)
def test_check_outcome_passes_a_well_formed_outcome_through(outcome: Outcome) -> None:
    assert check_outcome(outcome, "call(M)") is outcome


# -- the World: the other things a provider can get wrong --------------------------------------


class Scripted(Provider):
    """A provider whose setup/observe/reset answers are given by the test."""

    def __init__(self, created: Any = "id-1", rows: Any = (), fail: Exception | None = None):
        self.created, self.rows, self.fail = created, rows, fail

    def reset(self) -> None:
        if self.fail is not None:
            raise self.fail

    def setup(self, step: dict[str, Any]) -> Any:
        return self.created

    def observe(self, collection: str) -> Any:
        return self.rows


def world_for(catalog: Catalog, provider: Provider) -> World:
    return World(provider, catalog.domains["virtual-pc"])


VM = {"virtual_machine": "VM1", "power": "running", "additions": True, "execute_access": True}


@pytest.mark.parametrize(
    ("created", "ok"),
    [
        ("vm-7", True),
        (7, True),
        (None, False),
        ("", False),
        (True, False),
        ({"id": 1}, False),
    ],
)
def test_setup_must_return_a_non_empty_id(catalog: Catalog, created: Any, ok: bool) -> None:
    world = world_for(catalog, Scripted(created=created))
    if ok:
        world.setup(VM)
        assert world.ids["VM1"] == str(created)
        return
    with pytest.raises(ProviderError, match="it must return the provider's id"):
        world.setup(VM)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({"vm-1": {"id": "vm-1"}}, "it must return a list of dicts"),
        (["vm-1"], "it must return a list of dicts"),
        (None, "it must return a list of dicts"),
        ([{"power": "running"}], "returned an object without 'id'"),
    ],
)
def test_observe_must_return_rows_with_ids(catalog: Catalog, rows: Any, message: str) -> None:
    with pytest.raises(ProviderError, match=message):
        world_for(catalog, Scripted(rows=rows)).observe("virtual_machines")


def test_observe_speaks_scenario_names_and_marks_the_unknown(catalog: Catalog) -> None:
    rows = [
        {"id": "vm-7", "power": "off", "additions": True, "execute_access": False, "extra": 1},
        {"id": "vm-9"},
    ]
    world = world_for(catalog, Scripted(created="vm-7", rows=rows))
    world.setup(VM)
    seen = world.observe("virtual_machines")
    # every declared field is shown; one the provider left out is marked, an extra one dropped
    assert {k: seen[0][k] for k in ("id", "power", "additions", "execute_access")} == {
        "id": "VM1",
        "power": "off",
        "additions": True,
        "execute_access": False,
    }
    assert "extra" not in seen[0]
    assert all(
        v == "<missing>"
        for k, v in seen[0].items()
        if k not in ("id", "power", "additions", "execute_access")
    )
    assert seen[1]["id"] == "<new vm-9>" and seen[1]["power"] == "<missing>"


def test_a_raising_provider_becomes_a_provider_error(catalog: Catalog) -> None:
    world = world_for(catalog, Scripted(fail=RuntimeError("boom")))
    with pytest.raises(ProviderError, match=r"provider raised in reset\(\): RuntimeError: boom"):
        world.reset()


def test_unsupported_is_not_a_provider_error(catalog: Catalog) -> None:
    """Unsupported must reach the engine as is: it means not applicable, not failed."""
    with pytest.raises(Unsupported):
        world_for(catalog, Scripted(fail=Unsupported("no VMs here"))).reset()


# -- the oracle: first match wins ---------------------------------------------------------------

LOGOUT_BASE = ({"initiator_adapter": "A1"}, {"target": "T1"}, {"target": "T2"})


def logout_args(target: Any = "T1") -> dict[str, Any]:
    return {"this": "A1", "targetId": target, "ppAsync": OUT}


def test_no_session_wins_over_the_vacuous_all_refuse_rule(oracle, given) -> None:
    """With no session to T1, rule 1's `.all(...)` over an empty list is true too."""
    s = given(
        LOGOUT,
        *LOGOUT_BASE,
        {"session": "S1", "target": "T2"},
        {"fault": "logout_fails", "session": "S1"},
    )
    p = oracle(LOGOUT).predict(s, logout_args())
    assert (p.rule.index, p.codes, p.values) == (
        0,
        ("VDS_E_ISCSI_SESSION_NOT_FOUND",),
        (0x8004270A,),
    )


def test_every_session_refusing_is_failed_not_incomplete(oracle, given) -> None:
    s = given(
        LOGOUT,
        *LOGOUT_BASE,
        {"session": "S1", "target": "T1"},
        {"session": "S2", "target": "T1"},
        {"fault": "logout_fails", "session": "S1"},
        {"fault": "logout_fails", "session": "S2"},
    )
    p = oracle(LOGOUT).predict(s, logout_args())
    assert (p.rule.index, p.codes) == (1, ("VDS_E_ISCSI_LOGOUT_FAILED",))
    assert p.state == s


def test_unknown_target_is_session_not_found(oracle, given) -> None:
    s = given(LOGOUT, *LOGOUT_BASE, {"session": "S1", "target": "T1"})
    assert oracle(LOGOUT).predict(s, logout_args(Unknown("target"))).codes == (
        "VDS_E_ISCSI_SESSION_NOT_FOUND",
    )


def test_deleted_group_wins_over_every_later_rule(oracle, given) -> None:
    s = given(
        REMOVE_PORTAL,
        {"target": "T1"},
        {"portal": "P1"},
        {"portal": "P2"},
        {"portal_group": "G1", "target": "T1", "portals": ["P1"]},
        {"fault": "provider_cache_corrupt"},
        {"fault": "operation_pending", "object": "G1"},
        {"fault": "object_deleted", "object": "G1"},
    )
    p = oracle(REMOVE_PORTAL).predict(s, {"this": "G1", "portalId": "P2", "ppAsync": OUT})
    assert p.codes == ("VDS_E_OBJECT_DELETED",) and p.state == s


def test_a_pending_operation_allows_either_documented_symbol(oracle, given) -> None:
    s = given(
        REMOVE_PORTAL,
        {"target": "T1"},
        {"portal": "P1"},
        {"portal_group": "G1", "target": "T1", "portals": ["P1"]},
        {"fault": "operation_pending", "object": "G1"},
    )
    p = oracle(REMOVE_PORTAL).predict(s, {"this": "G1", "portalId": "P1", "ppAsync": OUT})
    assert p.codes == ("VDS_E_OPERATION_PENDING", "VDS_E_ANOTHER_CALL_IN_PROGRESS")
    assert p.values == (0x80042409, 0x80042404)  # the second from codes.yaml via `also`


def test_null_task_pointer_wins_over_access_and_power(oracle, given) -> None:
    s = given(
        LOGOFF,
        {"virtual_machine": "VM1", "power": "off", "additions": False, "execute_access": False},
    )
    assert oracle(LOGOFF).predict(s, {"this": "VM1", "outLogoffTask": None}).codes == ("E_POINTER",)
    assert oracle(LOGOFF).predict(s, {"this": "VM1", "outLogoffTask": OUT}).codes == (
        "HRESULT_FROM_WIN32(ERROR_ACCESS_DENIED)",
    )


# -- the oracle: effects give the next state ----------------------------------------------------


def test_logout_removes_only_the_sessions_to_the_target(oracle, given) -> None:
    s = given(
        LOGOUT,
        *LOGOUT_BASE,
        {"session": "S1", "target": "T1"},
        {"session": "S2", "target": "T1"},
        {"session": "S3", "target": "T2"},
    )
    before = [dict(x) for x in s["sessions"]]
    p = oracle(LOGOUT).predict(s, logout_args())
    assert p.codes == ("S_OK",)
    assert p.state["sessions"] == [{"id": "S3", "target": "T2"}]
    assert p.state["targets"] == s["targets"]
    assert s["sessions"] == before, "predict must not change the state it was given"


def test_incomplete_logout_keeps_the_refusing_session(oracle, given) -> None:
    s = given(
        LOGOUT,
        *LOGOUT_BASE,
        {"session": "S1", "target": "T1"},
        {"session": "S2", "target": "T1"},
        {"fault": "logout_fails", "session": "S2"},
    )
    p = oracle(LOGOUT).predict(s, logout_args())
    assert p.codes == ("VDS_E_ISCSI_LOGOUT_INCOMPLETE",)
    assert [x["id"] for x in p.state["sessions"]] == ["S2"]


def test_remove_portal_takes_the_portal_out_of_that_group_only(oracle, given) -> None:
    s = given(
        REMOVE_PORTAL,
        {"target": "T1"},
        {"portal": "P1"},
        {"portal": "P2"},
        {"portal_group": "G1", "target": "T1", "portals": ["P1", "P2"]},
        {"portal_group": "G2", "target": "T1", "portals": ["P1"]},
    )
    p = oracle(REMOVE_PORTAL).predict(s, {"this": "G1", "portalId": "P1", "ppAsync": OUT})
    assert p.codes == ("S_OK",)
    assert [{k: g[k] for k in ("id", "target", "portals")} for g in p.state["portal_groups"]] == [
        {"id": "G1", "target": "T1", "portals": ["P2"]},
        {"id": "G2", "target": "T1", "portals": ["P1"]},
    ]
    assert p.state["portals"] == s["portals"]


def test_remove_w_with_all_ports_and_null_portal_removes_every_match(oracle, given) -> None:
    portal = {"SymbolicName": "", "Address": "192.0.2.10", "Socket": 3260}
    s = given(
        REMOVE_W,
        {"initiator": "I1"},
        {"port": "N1", "initiator": "I1"},
        {"port": "N2", "initiator": "I1"},
        {
            "persistent_target": "PT1",
            "initiator": "I1",
            "port": "N1",
            "target_name": IQN + "disk1",
            "portal": portal,
        },
        {
            "persistent_target": "PT2",
            "initiator": "I1",
            "port": "N2",
            "target_name": IQN + "disk1",
            "portal": portal,
        },
        {
            "persistent_target": "PT3",
            "initiator": "I1",
            "port": "N2",
            "target_name": IQN + "disk2",
            "portal": portal,
        },
    )
    p = oracle(REMOVE_W).predict(
        s,
        {
            "InitiatorInstance": "I1",
            "InitiatorPortNumber": ALL_PORTS,
            "TargetName": IQN + "disk1",
            "Portal": None,
        },
    )
    assert p.codes == ("ERROR_SUCCESS",)
    assert [t["id"] for t in p.state["persistent_targets"]] == ["PT3"]


# -- the oracle: ansi() is the A form's code-page round trip ------------------------------------


def test_ansi_maps_what_cp1252_cannot_hold_to_question_marks() -> None:
    ansi = ansi_function("cp1252")
    assert ansi("диск") == "????"
    assert ansi(IQN + "café") == IQN + "café"
    assert ansi(None) is None and ansi(5) == 5


def test_ansi_under_cp1251_keeps_cyrillic_and_loses_the_accent() -> None:
    ansi = ansi_function("cp1251")
    assert ansi("диск") == "диск"
    assert ansi("café") == "caf?"


def _persistent(given, method: str, name: str) -> dict[str, list[dict[str, Any]]]:
    return given(
        method,
        {"initiator": "I1"},
        {"port": "N1", "initiator": "I1"},
        {
            "persistent_target": "PT1",
            "initiator": "I1",
            "port": "N1",
            "target_name": name,
            "portal": {"SymbolicName": "", "Address": "192.0.2.10", "Socket": 3260},
        },
    )


def _remove(name: str) -> dict[str, Any]:
    return {
        "InitiatorInstance": "I1",
        "InitiatorPortNumber": "N1",
        "TargetName": name,
        "Portal": None,
    }


@pytest.mark.parametrize(
    ("method", "stored", "called", "code_page", "expect"),
    [
        (REMOVE_A, "диск", "диск", "cp1252", "ISDSC_TARGET_NOT_FOUND"),
        (REMOVE_A, "????", "диск", "cp1252", "ERROR_SUCCESS"),
        (REMOVE_A, "café", "café", "cp1252", "ERROR_SUCCESS"),
        (REMOVE_A, "диск", "диск", "cp1251", "ERROR_SUCCESS"),
        (REMOVE_W, "диск", "диск", "cp1252", "ERROR_SUCCESS"),
        (REMOVE_W, "????", "диск", "cp1252", "ISDSC_TARGET_NOT_FOUND"),
    ],
)
def test_a_form_matches_names_as_the_code_page_carries_them(
    oracle, given, method: str, stored: str, called: str, code_page: str, expect: str
) -> None:
    s = _persistent(given, method, IQN + stored)
    p = oracle(method, code_page).predict(s, _remove(IQN + called))
    assert p.codes == (expect,)
    assert (p.state["persistent_targets"] == []) == (expect == "ERROR_SUCCESS")


# -- the oracle: a defective rule is a spec error with its place -------------------------------


def _with_rules(catalog: Catalog, *rules: Rule) -> Spec:
    return dataclasses.replace(spec_of(catalog, LOGOUT), rules=rules)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (Rule("1", ("S_OK",)), "gave 1, not a bool"),
        (Rule("false", ("S_OK",)), "no rule matched"),
        (Rule("true", ("S_OK",), {"sessions": "1"}), "gave int, not a list"),
        (
            Rule("state.nothing.exists(x, true)", ("S_OK",)),
            r"LogoutFromTarget.yaml:\d+: rules\[0\]",
        ),
        (Rule("true", ("S_NOPE",)), "S_NOPE is not a code of"),
        (
            Rule(
                "["
                + ",".join(["1"] * 250)
                + "].map(x, ["
                + ",".join(["1"] * 250)
                + "].map(y, ["
                + ",".join(["1"] * 250)
                + "].map(z, z))).size() > 0",
                ("S_OK",),
            ),
            r"LogoutFromTarget.yaml:\d+: rules\[0\]\.when: CostExceeded: comprehensions visited "
            r"more than 1,000,000 elements",
        ),
    ],
)
def test_a_defective_rule_is_an_oracle_error(
    catalog: Catalog, given, rule: Rule, message: str
) -> None:
    spec = _with_rules(catalog, rule)
    with pytest.raises(OracleError, match=message):
        Oracle(spec, catalog.codes).predict(given(LOGOUT, *LOGOUT_BASE), logout_args())


def test_a_rule_that_does_not_compile_fails_before_any_call(catalog: Catalog) -> None:
    with pytest.raises(OracleError, match=r"rules\[0\]\.when: does not compile"):
        Oracle(_with_rules(catalog, Rule("(((", ("S_OK",))), catalog.codes)


def test_describe_names_known_values_and_shows_the_rest_in_hex(oracle) -> None:
    o = oracle(LOGOUT)
    assert o.describe(0x8004270A) == "VDS_E_ISCSI_SESSION_NOT_FOUND (0x8004270A)"
    assert o.describe(0x80070057) == "E_INVALIDARG (0x80070057)"
    assert o.describe(5) == "0x00000005"
    assert oracle(REMOVE_W).describe(0) == "ERROR_SUCCESS (0x00000000)"


# -- effective: where the operation's result arrives -------------------------------------------


@pytest.mark.parametrize(
    ("method", "outcome", "expect"),
    [
        (LOGOUT, Outcome(0, {"ppAsync": "h"}, 0x80042709), (0x80042709, "completion")),
        (LOGOUT, Outcome(0, {"ppAsync": "h"}, 0), (0, "completion")),
        (LOGOUT, Outcome(0x8004270A, {"ppAsync": None}), (0x8004270A, "call")),
        (LOGOUT, Outcome(0x8004270A, {"ppAsync": "h"}, 0), (0x8004270A, "call")),
        (LOGOUT, Outcome(0, {"ppAsync": "h"}, None), (0, "call")),
        (LOGOFF, Outcome(0, {"outLogoffTask": "t"}, 0x80070520), (0x80070520, "completion")),
        (LOGOFF, Outcome(1, {"outLogoffTask": "t"}, 0xA0040202), (0xA0040202, "completion")),
        (REMOVE_W, Outcome(0, {}, 0xEFFF0029), (0, "call")),
        (REMOVE_W, Outcome(0xEFFF0029), (0xEFFF0029, "call")),
    ],
)
def test_effective_takes_the_completion_only_of_an_async_success(
    catalog: Catalog, method: str, outcome: Outcome, expect: tuple[int, str]
) -> None:
    """A failed call never started the operation; a direct function has no completion."""
    assert effective(spec_of(catalog, method), outcome) == expect


# -- out_param_problem: pointers agree with the code; statuses and HRESULTs do not mix ----------


def subject(catalog: Catalog, spec: Spec) -> Subject:
    return Subject(spec, catalog.domain_of(spec), catalog.codes, ReferenceProvider(), ())


PROBLEMS: list[tuple[str, str, Outcome, str]] = [
    (
        "leaked handle",
        LOGOUT,
        Outcome(0x8004270A, {"ppAsync": "h"}),
        "failed with VDS_E_ISCSI_SESSION_NOT_FOUND (0x8004270A) but set ppAsync: out-parameters "
        "must be NULL on failure",
    ),
    (
        "completion of a failed call",
        REMOVE_PORTAL,
        Outcome(0x80042405, {"ppAsync": None}, 0),
        "failed with VDS_E_OBJECT_NOT_FOUND (0x80042405) but reported a completion",
    ),
    (
        "no async object",
        LOGOUT,
        Outcome(0, {"ppAsync": None}, 0),
        "succeeded with S_OK (0x00000000) but returned no async object in ppAsync",
    ),
    (
        "async object without a result",
        REMOVE_PORTAL,
        Outcome(0, {"ppAsync": "h"}, None),
        "succeeded with S_OK (0x00000000) but the async object ppAsync has no result",
    ),
    (
        "undocumented completion",
        LOGOFF,
        Outcome(0, {"outLogoffTask": "t"}, 0x8000FFFF),
        "the async object outLogoffTask completed with E_UNEXPECTED (0x8000FFFF), not a "
        "documented code",
    ),
    (
        "completion on a direct function",
        REMOVE_W,
        Outcome(0, {}, 0),
        "reported a completion though the method has no async object",
    ),
    (
        "completion of a failed direct call",
        REMOVE_W,
        Outcome(0xEFFF0029, {}, 0xEFFF0029),
        "failed with ISDSC_TARGET_NOT_FOUND (0xEFFF0029) but reported a completion",
    ),
    (
        "HRESULT from a Win32 function",
        REMOVE_W,
        Outcome(0x80070057),
        "returned E_INVALIDARG (0x80070057), an HRESULT, where a Win32 or ISDSC status is "
        "documented (HRESULT_FROM_WIN32 used by mistake?)",
    ),
    (
        "bare Win32 from an HRESULT method",
        LOGOFF,
        Outcome(5, {"outLogoffTask": None}),
        "returned 0x00000005, a bare Win32 code, where an HRESULT is documented "
        "(missing HRESULT_FROM_WIN32?)",
    ),
    (
        "bare Win32 not admitted by also",
        LOGOUT,
        Outcome(0x57, {"ppAsync": None}),
        "returned 0x00000057, a bare Win32 code, where an HRESULT is documented "
        "(missing HRESULT_FROM_WIN32?)",
    ),
]


@pytest.mark.parametrize(
    ("method", "outcome", "message"), [p[1:] for p in PROBLEMS], ids=[p[0] for p in PROBLEMS]
)
def test_out_param_problem_names_the_mistake(
    catalog: Catalog, method: str, outcome: Outcome, message: str
) -> None:
    assert out_param_problem(subject(catalog, spec_of(catalog, method)), outcome) == message


FINE: list[tuple[str, str, Outcome]] = [
    ("async success", LOGOUT, Outcome(0, {"ppAsync": "h"}, 0x80042710)),
    ("failure with NULL out", LOGOUT, Outcome(0x8004270A, {"ppAsync": None})),
    ("failure without the key", REMOVE_PORTAL, Outcome(0x8004240B)),
    (
        "task completing with a documented failure",
        LOGOFF,
        Outcome(0, {"outLogoffTask": "t"}, 0x80070520),
    ),
    ("documented HRESULT-shaped code", LOGOFF, Outcome(0x80070005, {"outLogoffTask": None})),
    ("Win32 success", REMOVE_W, Outcome(0)),
    ("ISDSC status", REMOVE_W, Outcome(0xEFFF0017)),
    ("a Win32 error admitted by WIN32_ERROR", REMOVE_W, Outcome(0x57)),
]


@pytest.mark.parametrize(("method", "outcome"), [f[1:] for f in FINE], ids=[f[0] for f in FINE])
def test_out_param_problem_accepts_what_the_contract_allows(
    catalog: Catalog, method: str, outcome: Outcome
) -> None:
    assert out_param_problem(subject(catalog, spec_of(catalog, method)), outcome) is None


def test_a_win32_failure_status_must_leave_out_params_null(catalog: Catalog) -> None:
    spec = spec_of(catalog, REMOVE_W)
    with_out = dataclasses.replace(spec, params=(*spec.params, Param("pCount", "out", "PULONG")))
    problem = out_param_problem(subject(catalog, with_out), Outcome(0x57, {"pCount": 3}))
    assert problem is not None and "pCount" in problem
