"""Direct tests of the bundled reference provider, each behaviour read off the API pages."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from conformance_providers.reference import ReferenceProvider

from conformance.provider import Outcome, Provider, Unsupported, load

LOGOUT = "IVdsIscsiInitiatorAdapter::LogoutFromTarget"
REMOVE_PORTAL = "IVdsIscsiPortalGroup::RemovePortal"
VDS_METHODS = [
    f"IVdsIscsiInitiatorAdapter::{m}"
    for m in ("GetProperties", "QueryInitiatorPortals", "LoginToTarget", "LogoutFromTarget")
] + [
    f"IVdsIscsiPortalGroup::{m}"
    for m in (
        "GetProperties",
        "GetTarget",
        "QueryAssociatedPortals",
        "AddPortal",
        "RemovePortal",
        "Delete",
    )
]
REMOVE_W = "RemoveIScsiPersistentTargetW"
REMOVE_A = "RemoveIScsiPersistentTargetA"
ISCSI_DISCOVERY_METHODS = [
    f"{name}{form}"
    for name in (
        "AddIScsiStaticTarget",
        "RemoveIScsiStaticTarget",
        "ReportIScsiPersistentLogins",
        "RemoveIScsiPersistentTarget",
        "LoginIScsiTarget",
    )
    for form in "WA"
] + ["LogoutIScsiTarget"]
LOGOFF = "IVMGuestOS::Logoff"
VPC_METHODS = [
    f"IVMGuestOS::{m}"
    for m in (
        "GetOsVersionInfo",
        "GetParameter",
        "InstallIntegrationComponents",
        "IsUserLoggedOn",
        "Logoff",
        "Restart",
        "SetParameter",
        "Shutdown",
        "put_IsHostTimeSyncEnabled",
    )
] + [
    f"IVMGuestOS::get_{p}"
    for p in (
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
]

S_OK = 0
VDS_E_OBJECT_NOT_FOUND = 0x80042405
VDS_E_ANOTHER_CALL_IN_PROGRESS = 0x80042404
VDS_E_OBJECT_DELETED = 0x8004240B
VDS_E_PROVIDER_CACHE_CORRUPT = 0x8004241F
VDS_E_ISCSI_LOGOUT_FAILED = 0x80042709
VDS_E_ISCSI_SESSION_NOT_FOUND = 0x8004270A
VDS_E_ISCSI_LOGOUT_INCOMPLETE = 0x80042710
ISCSI_ALL_INITIATOR_PORTS = 0xFFFFFFFF
ISDSC_INITIATOR_INSTANCE_NOT_FOUND = 0xEFFF0017
ISDSC_TARGET_NOT_FOUND = 0xEFFF0029
ISDSC_INVALID_PORT_NUMBER = 0xEFFF002D
E_POINTER = 0x80004003
DISP_E_EXCEPTION = 0x80020009
E_ACCESSDENIED_WIN32 = 0x80070005
NO_SUCH_LOGON_SESSION_WIN32 = 0x80070520
VM_E_TIMED_OUT = 0xA0040202
VM_E_VM_NOT_RUNNING = 0xA0040206
VM_E_VM_UNKNOWN = 0xA0040207
VM_E_ADDITIONS_FEATURE_NOT_AVAIL = 0xA0040505

ALL_COLLECTIONS = [
    "initiator_adapters",
    "initiator_portals",
    "targets",
    "sessions",
    "portals",
    "portal_groups",
    "initiators",
    "ports",
    "persistent_targets",
    "static_targets",
    "virtual_machines",
    "logon_sessions",
]


@pytest.fixture
def p() -> ReferenceProvider:
    provider = ReferenceProvider()
    provider.reset()
    return provider


def ids(provider: Provider, collection: str) -> list[str]:
    return [row["id"] for row in provider.observe(collection)]


def assert_u32(outcome: Outcome) -> None:
    assert 0 <= outcome.hresult <= 0xFFFFFFFF
    assert outcome.completion is None or 0 <= outcome.completion <= 0xFFFFFFFF


def assert_direct(outcome: Outcome, code: int, out: str) -> None:
    assert_u32(outcome)
    assert (outcome.hresult, outcome.outputs, outcome.completion) == (code, {out: None}, None)


def assert_async(outcome: Outcome, completion: int, out: str) -> None:
    assert_u32(outcome)
    assert outcome.hresult == S_OK
    assert outcome.outputs[out] is not None
    assert outcome.completion == completion


# -- contract surface --------------------------------------------------------------------


def test_capabilities_list_every_method_step_fault_and_collection(p: ReferenceProvider) -> None:
    caps = p.capabilities()
    assert sorted(caps["methods"]) == sorted([*VDS_METHODS, *ISCSI_DISCOVERY_METHODS, *VPC_METHODS])
    assert sorted(caps["steps"]) == sorted(
        [
            "initiator_adapter",
            "initiator_portal",
            "target",
            "session",
            "portal",
            "portal_group",
            "initiator",
            "port",
            "persistent_target",
            "static_target",
            "iscsi_session",
            "virtual_machine",
            "logon_session",
            "guest_parameter",
            "fault",
        ]
    )
    assert sorted(caps["faults"]) == sorted(
        [
            "logout_fails",
            "login_fails",
            "properties_incomplete",
            "provider_cache_corrupt",
            "operation_pending",
            "object_deleted",
            "session_device_in_use",
            "persistent_login_store_fails",
            "configuration_unknown",
            "guest_timeout",
            "unexpected_error",
            "out_of_memory",
            "shutdown_in_progress",
            "guest_not_ready",
            "media_unmount_fails",
            "integration_components_iso_missing",
        ]
    )
    assert sorted(caps["observe"]) == sorted(ALL_COLLECTIONS)


def test_loads_through_the_entry_point() -> None:
    assert isinstance(load("reference"), ReferenceProvider)


def test_code_page_option_is_validated() -> None:
    ReferenceProvider(code_page="cp1251")
    with pytest.raises(ValueError, match="unknown ANSI code page"):
        ReferenceProvider(code_page="no-such-code-page")
    with pytest.raises(ValueError, match="ASCII-compatible"):
        ReferenceProvider(code_page="utf-16")


def test_reset_empties_every_collection_and_clears_faults(p: ReferenceProvider) -> None:
    target = p.setup({"target": "T1"})
    session = p.setup({"session": "S1", "target": target})
    p.setup({"fault": "logout_fails", "session": session})
    p.setup({"fault": "provider_cache_corrupt"})
    portal = p.setup({"portal": "P1"})
    p.setup({"portal_group": "G1", "target": target, "portals": [portal]})
    adapter = p.setup({"initiator_adapter": "A1"})
    p.setup({"initiator_portal": "IP1", "adapter": adapter})
    initiator = p.setup({"initiator": "I1"})
    port = p.setup({"port": "N1", "initiator": initiator})
    p.setup(
        {
            "persistent_target": "PT1",
            "initiator": initiator,
            "port": port,
            "target_name": "iqn.x",
            "portal": {"SymbolicName": "", "Address": "a", "Socket": 1},
        }
    )
    p.setup({"static_target": "ST1", "target_name": "iqn.x"})
    vm = p.setup(
        {"virtual_machine": "VM1", "power": "running", "additions": True, "execute_access": True}
    )
    p.setup({"logon_session": "L1", "vm": vm})
    p.setup({"fault": "guest_timeout", "vm": vm})
    assert all(p.observe(c) for c in ALL_COLLECTIONS)

    p.reset()
    assert all(p.observe(c) == [] for c in ALL_COLLECTIONS)
    # Old ids are gone, and so are the faults that were armed on them.
    with pytest.raises(ValueError):
        p.setup({"session": "S2", "target": target})
    t2 = p.setup({"target": "T2"})
    p.setup({"session": "S2", "target": t2})
    assert (
        p.call(LOGOUT, {"this": p.setup({"initiator_adapter": "A"}), "targetId": t2}).completion
        == S_OK
    )
    assert p.setup({"initiator": "I"}) == "ROOT\\ISCSIPRT\\0000_0"
    assert p.setup({"port": "N", "initiator": "ROOT\\ISCSIPRT\\0000_0"}) == "1000"


@pytest.mark.parametrize(
    "step, error",
    [
        ({"no_such_step": "X"}, Unsupported),
        ({"fault": "no_such_fault"}, Unsupported),
        ({}, ValueError),
        ({"session": "S", "target": str(uuid.uuid4())}, ValueError),
        ({"session": "S"}, ValueError),
        ({"target": "T", "colour": "red"}, ValueError),
        ({"portal_group": "G", "target": "not-a-guid"}, ValueError),
        ({"port": "N", "initiator": "ROOT\\ISCSIPRT\\0000_0"}, ValueError),
        ({"logon_session": "L", "vm": "vm-1"}, ValueError),
        ({"fault": "logout_fails", "session": str(uuid.uuid4())}, ValueError),
        ({"fault": "object_deleted", "object": str(uuid.uuid4())}, ValueError),
        ({"fault": "guest_timeout", "vm": "vm-9"}, ValueError),
        (
            {"virtual_machine": "V", "power": "asleep", "additions": True, "execute_access": True},
            ValueError,
        ),
        (
            {"virtual_machine": "V", "power": "off", "additions": "yes", "execute_access": True},
            ValueError,
        ),
    ],
)
def test_bad_steps_raise(
    p: ReferenceProvider, step: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        p.setup(step)


def test_bad_refs_in_list_and_port_fields_raise(p: ReferenceProvider) -> None:
    target = p.setup({"target": "T"})
    portal = p.setup({"portal": "P"})
    with pytest.raises(ValueError, match="portal ref"):
        p.setup({"portal_group": "G", "target": target, "portals": [str(uuid.uuid4())]})
    with pytest.raises(ValueError, match="more than once"):
        p.setup({"portal_group": "G", "target": target, "portals": [portal, portal]})
    with pytest.raises(ValueError, match="target ref"):
        p.setup({"portal_group": "G", "target": portal})
    i0, i1 = p.setup({"initiator": "I0"}), p.setup({"initiator": "I1"})
    port0 = p.setup({"port": "N0", "initiator": i0})
    blank = {"SymbolicName": "", "Address": "", "Socket": 0}
    with pytest.raises(ValueError, match="port ref"):
        p.setup(
            {
                "persistent_target": "PT",
                "initiator": i0,
                "port": "7",
                "target_name": "t",
                "portal": blank,
            }
        )
    with pytest.raises(ValueError, match="belongs to"):
        p.setup(
            {
                "persistent_target": "PT",
                "initiator": i1,
                "port": port0,
                "target_name": "t",
                "portal": blank,
            }
        )


def test_unknown_method_and_collection_are_unsupported(p: ReferenceProvider) -> None:
    with pytest.raises(Unsupported):
        p.call("IVdsDisk::Nothing", {})
    with pytest.raises(Unsupported):
        p.observe("volumes")


def test_missing_argument_is_a_value_error(p: ReferenceProvider) -> None:
    with pytest.raises(ValueError, match="targetId"):
        p.call(LOGOUT, {"this": str(uuid.uuid4())})


def test_ids_and_observed_shapes(p: ReferenceProvider) -> None:
    adapter = p.setup({"initiator_adapter": "A"})
    target = p.setup({"target": "T"})
    session = p.setup({"session": "S", "target": target})
    portal = p.setup({"portal": "P"})
    group = p.setup({"portal_group": "G", "target": target, "portals": [portal]})
    empty_group = p.setup({"portal_group": "G2", "target": target})
    for vds_id in (adapter, target, session, portal, group, empty_group):
        assert str(uuid.UUID(vds_id)) == vds_id
    assert p.observe("initiator_adapters") == [{"id": adapter, "name": ""}]
    assert p.observe("sessions") == [{"id": session, "target": target}]
    assert p.observe("portal_groups") == [
        {"id": group, "target": target, "tag": 0, "portals": [portal]},
        {"id": empty_group, "target": target, "tag": 0, "portals": []},
    ]
    i0 = p.setup({"initiator": "I0"})
    i1 = p.setup({"initiator": "I1"})
    assert (i0, i1) == ("ROOT\\ISCSIPRT\\0000_0", "ROOT\\ISCSIPRT\\0001_0")
    ports = [p.setup({"port": f"N{n}", "initiator": i}) for n, i in enumerate((i0, i1, i0))]
    assert ports == ["1000", "1001", "1002"]
    assert p.observe("ports") == [
        {"id": "1000", "initiator": i0},
        {"id": "1001", "initiator": i1},
        {"id": "1002", "initiator": i0},
    ]
    portal_value = {"SymbolicName": "s", "Address": "10.0.0.1", "Socket": 3260}
    pt = p.setup(
        {
            "persistent_target": "PT",
            "initiator": i1,
            "port": "1001",
            "target_name": "iqn.t",
            "portal": portal_value,
        }
    )
    assert p.observe("persistent_targets") == [
        {"id": pt, "initiator": i1, "port": "1001", "target_name": "iqn.t", "portal": portal_value}
    ]
    vm = p.setup(
        {"virtual_machine": "V", "power": "saved", "additions": False, "execute_access": True}
    )
    logon = p.setup({"logon_session": "L", "vm": vm})
    (row,) = p.observe("virtual_machines")
    assert {k: row[k] for k in ("id", "power", "additions", "execute_access")} == {
        "id": vm,
        "power": "saved",
        "additions": False,
        "execute_access": True,
    }
    assert p.observe("logon_sessions") == [{"id": logon, "vm": vm, "kind": "rdp"}]


def test_observe_returns_copies(p: ReferenceProvider) -> None:
    target = p.setup({"target": "T"})
    portal = p.setup({"portal": "P"})
    p.setup({"portal_group": "G", "target": target, "portals": [portal]})
    p.observe("portal_groups")[0]["portals"].clear()
    assert p.observe("portal_groups")[0]["portals"] == [portal]


def test_fault_steps_return_ids(p: ReferenceProvider) -> None:
    a = p.setup({"fault": "provider_cache_corrupt"})
    b = p.setup({"fault": "provider_cache_corrupt"})
    assert isinstance(a, str) and isinstance(b, str) and a != b


# -- IVdsIscsiInitiatorAdapter::LogoutFromTarget ------------------------------------------


@pytest.fixture
def two_sessions(p: ReferenceProvider) -> dict[str, str]:
    world = {
        "adapter": p.setup({"initiator_adapter": "A"}),
        "target": p.setup({"target": "T"}),
        "other": p.setup({"target": "T2"}),
    }
    world["s1"] = p.setup({"session": "S1", "target": world["target"]})
    world["s2"] = p.setup({"session": "S2", "target": world["target"]})
    world["s3"] = p.setup({"session": "S3", "target": world["other"]})
    return world


def test_logout_success_removes_every_session_to_the_target(
    p: ReferenceProvider, two_sessions: dict[str, str]
) -> None:
    w = two_sessions
    outcome = p.call(LOGOUT, {"this": w["adapter"], "targetId": w["target"]})
    assert_async(outcome, S_OK, "ppAsync")
    assert ids(p, "sessions") == [w["s3"]]
    assert sorted(ids(p, "targets")) == sorted([w["target"], w["other"]])


def test_logout_guid_compares_by_value(p: ReferenceProvider, two_sessions: dict[str, str]) -> None:
    w = two_sessions
    outcome = p.call(LOGOUT, {"this": w["adapter"].upper(), "targetId": w["target"].upper()})
    assert_async(outcome, S_OK, "ppAsync")


def test_logout_without_sessions_is_session_not_found(
    p: ReferenceProvider, two_sessions: dict[str, str]
) -> None:
    w = two_sessions
    lonely = p.setup({"target": "T3"})
    for target_id in (lonely, str(uuid.uuid4()), "not-a-guid"):
        assert_direct(
            p.call(LOGOUT, {"this": w["adapter"], "targetId": target_id}),
            VDS_E_ISCSI_SESSION_NOT_FOUND,
            "ppAsync",
        )
    assert len(ids(p, "sessions")) == 3


def test_logout_all_refusing_fails_and_changes_nothing(
    p: ReferenceProvider, two_sessions: dict[str, str]
) -> None:
    w = two_sessions
    p.setup({"fault": "logout_fails", "session": w["s1"]})
    p.setup({"fault": "logout_fails", "session": w["s2"]})
    outcome = p.call(LOGOUT, {"this": w["adapter"], "targetId": w["target"]})
    assert_async(outcome, VDS_E_ISCSI_LOGOUT_FAILED, "ppAsync")
    assert len(ids(p, "sessions")) == 3


def test_logout_some_refusing_is_incomplete_and_removes_the_rest(
    p: ReferenceProvider, two_sessions: dict[str, str]
) -> None:
    w = two_sessions
    p.setup({"fault": "logout_fails", "session": w["s1"]})
    p.setup({"fault": "logout_fails", "session": w["s3"]})  # other target: irrelevant
    outcome = p.call(LOGOUT, {"this": w["adapter"], "targetId": w["target"]})
    assert_async(outcome, VDS_E_ISCSI_LOGOUT_INCOMPLETE, "ppAsync")
    assert sorted(ids(p, "sessions")) == sorted([w["s1"], w["s3"]])
    # The refusing session still refuses: a second logout now fails outright.
    again = p.call(LOGOUT, {"this": w["adapter"], "targetId": w["target"]})
    assert_async(again, VDS_E_ISCSI_LOGOUT_FAILED, "ppAsync")
    assert again.outputs["ppAsync"] != outcome.outputs["ppAsync"]


def test_logout_unknown_adapter_is_object_not_found(
    p: ReferenceProvider, two_sessions: dict[str, str]
) -> None:
    w = two_sessions
    for this in (str(uuid.uuid4()), w["target"]):
        assert_direct(
            p.call(LOGOUT, {"this": this, "targetId": w["target"]}),
            VDS_E_OBJECT_NOT_FOUND,
            "ppAsync",
        )
    assert len(ids(p, "sessions")) == 3


# -- IVdsIscsiPortalGroup::RemovePortal -----------------------------------------------------


@pytest.fixture
def groups(p: ReferenceProvider) -> dict[str, str]:
    target = p.setup({"target": "T"})
    w = {
        "p1": p.setup({"portal": "P1"}),
        "p2": p.setup({"portal": "P2"}),
        "p3": p.setup({"portal": "P3"}),
        "loose": p.setup({"portal": "P4"}),
    }
    w["g"] = p.setup({"portal_group": "G", "target": target, "portals": [w["p1"], w["p2"]]})
    w["h"] = p.setup({"portal_group": "H", "target": target, "portals": [w["p3"]]})
    return w


def members(p: ReferenceProvider, group: str) -> list[str]:
    return next(g["portals"] for g in p.observe("portal_groups") if g["id"] == group)


def test_remove_portal_success(p: ReferenceProvider, groups: dict[str, str]) -> None:
    w = groups
    assert_async(p.call(REMOVE_PORTAL, {"this": w["g"], "portalId": w["p1"]}), S_OK, "ppAsync")
    assert members(p, w["g"]) == [w["p2"]]
    assert w["p1"] in ids(p, "portals")
    # Once removed it is no longer a member.
    assert_direct(
        p.call(REMOVE_PORTAL, {"this": w["g"], "portalId": w["p1"]}),
        VDS_E_OBJECT_NOT_FOUND,
        "ppAsync",
    )


@pytest.mark.parametrize("which", ["unknown", "other_group", "no_group", "garbage"])
def test_remove_portal_not_a_member_is_object_not_found(
    p: ReferenceProvider, groups: dict[str, str], which: str
) -> None:
    w = groups
    portal = {
        "unknown": str(uuid.uuid4()),
        "other_group": w["p3"],
        "no_group": w["loose"],
        "garbage": "not-a-guid",
    }[which]
    assert_direct(
        p.call(REMOVE_PORTAL, {"this": w["g"], "portalId": portal}),
        VDS_E_OBJECT_NOT_FOUND,
        "ppAsync",
    )
    assert members(p, w["g"]) == [w["p1"], w["p2"]]


def test_remove_portal_unknown_group_is_object_not_found(
    p: ReferenceProvider, groups: dict[str, str]
) -> None:
    w = groups
    for this in (str(uuid.uuid4()), w["p1"]):
        assert_direct(
            p.call(REMOVE_PORTAL, {"this": this, "portalId": w["p1"]}),
            VDS_E_OBJECT_NOT_FOUND,
            "ppAsync",
        )


@pytest.mark.parametrize(
    "faults, code",
    [
        (["object_deleted", "provider_cache_corrupt", "operation_pending"], VDS_E_OBJECT_DELETED),
        (["provider_cache_corrupt", "operation_pending"], VDS_E_PROVIDER_CACHE_CORRUPT),
        (["operation_pending"], VDS_E_ANOTHER_CALL_IN_PROGRESS),
    ],
)
def test_remove_portal_faults_in_precedence_order(
    p: ReferenceProvider, groups: dict[str, str], faults: list[str], code: int
) -> None:
    w = groups
    for kind in faults:
        step = (
            {"fault": kind}
            if kind == "provider_cache_corrupt"
            else {"fault": kind, "object": w["g"]}
        )
        p.setup(step)
    # The faults outrank even a portal that is not a member.
    for portal in (w["p1"], w["loose"]):
        assert_direct(p.call(REMOVE_PORTAL, {"this": w["g"], "portalId": portal}), code, "ppAsync")
    assert members(p, w["g"]) == [w["p1"], w["p2"]]
    if "object_deleted" in faults:
        assert w["g"] in ids(p, "portal_groups")  # deleted only behind the caller's pointer


def test_remove_portal_object_faults_are_per_object(
    p: ReferenceProvider, groups: dict[str, str]
) -> None:
    w = groups
    p.setup({"fault": "object_deleted", "object": w["h"]})
    p.setup({"fault": "operation_pending", "object": w["p1"]})  # on the portal, not the group
    assert_async(p.call(REMOVE_PORTAL, {"this": w["g"], "portalId": w["p1"]}), S_OK, "ppAsync")
    assert_direct(
        p.call(REMOVE_PORTAL, {"this": w["h"], "portalId": w["p3"]}),
        VDS_E_OBJECT_DELETED,
        "ppAsync",
    )


# -- RemoveIScsiPersistentTargetW / A -------------------------------------------------------


def portal(address: str = "", socket: int = 0, name: str = "") -> dict[str, Any]:
    return {"SymbolicName": name, "Address": address, "Socket": socket}


@pytest.fixture
def logins(p: ReferenceProvider) -> dict[str, str]:
    w = {"i": p.setup({"initiator": "I"}), "j": p.setup({"initiator": "J"})}
    w["n0"] = p.setup({"port": "N0", "initiator": w["i"]})
    w["n1"] = p.setup({"port": "N1", "initiator": w["i"]})
    w["m0"] = p.setup({"port": "M0", "initiator": w["j"]})

    def add(initiator: str, port: str, name: str, address: str, socket: int) -> str:
        return p.setup(
            {
                "persistent_target": name,
                "initiator": w[initiator],
                "port": w[port],
                "target_name": name,
                "portal": portal(address, socket, "sym"),
            }
        )

    w["a"] = add("i", "n0", "iqn.a", "10.0.0.1", 3260)
    w["b"] = add("i", "n1", "iqn.a", "10.0.0.2", 3260)
    w["c"] = add("i", "n0", "iqn.a", "10.0.0.1", 3261)
    w["d"] = add("j", "m0", "iqn.a", "10.0.0.1", 3260)
    w["e"] = add("i", "n0", "iqn.b", "10.0.0.1", 3260)
    return w


def remove(
    p: ReferenceProvider,
    method: str,
    instance: str,
    port: int,
    name: str,
    target_portal: dict[str, Any] | None,
) -> int:
    outcome = p.call(
        method,
        {
            "InitiatorInstance": instance,
            "InitiatorPortNumber": port,
            "TargetName": name,
            "Portal": target_portal,
        },
    )
    assert_u32(outcome)
    assert outcome.outputs == {} and outcome.completion is None
    return outcome.hresult


@pytest.mark.parametrize("method", [REMOVE_W, REMOVE_A])
def test_remove_persistent_error_codes_in_order(
    p: ReferenceProvider, logins: dict[str, str], method: str
) -> None:
    w = logins
    before = ids(p, "persistent_targets")
    # Unknown initiator outranks a bad port and a missing target.
    assert (
        remove(p, method, "ROOT\\ISCSIPRT\\9999_0", 42, "nope", None)
        == ISDSC_INITIATOR_INSTANCE_NOT_FOUND
    )
    # A port of another initiator, or of none, outranks a missing target.
    assert remove(p, method, w["i"], int(w["m0"]), "nope", None) == ISDSC_INVALID_PORT_NUMBER
    assert remove(p, method, w["i"], 42, "iqn.a", None) == ISDSC_INVALID_PORT_NUMBER
    assert (
        remove(p, method, w["i"], ISCSI_ALL_INITIATOR_PORTS, "nope", None) == ISDSC_TARGET_NOT_FOUND
    )
    assert remove(p, method, w["i"], int(w["n0"]), "iqn.A", None) == ISDSC_TARGET_NOT_FOUND
    assert (
        remove(p, method, w["i"], int(w["n0"]), "iqn.a", portal("10.0.0.9", 3260))
        == ISDSC_TARGET_NOT_FOUND
    )
    assert ids(p, "persistent_targets") == before


def test_remove_persistent_one_port_one_portal(
    p: ReferenceProvider, logins: dict[str, str]
) -> None:
    w = logins
    # SymbolicName is not compared: only address and socket identify the portal.
    assert (
        remove(p, REMOVE_W, w["i"], int(w["n0"]), "iqn.a", portal("10.0.0.1", 3260, "different"))
        == 0
    )
    assert sorted(ids(p, "persistent_targets")) == sorted([w["b"], w["c"], w["d"], w["e"]])


@pytest.mark.parametrize("target_portal", [None, portal()])
def test_remove_persistent_no_portal_means_all_portals(
    p: ReferenceProvider, logins: dict[str, str], target_portal: dict[str, Any] | None
) -> None:
    w = logins
    assert remove(p, REMOVE_W, w["i"], int(w["n0"]), "iqn.a", target_portal) == 0
    assert sorted(ids(p, "persistent_targets")) == sorted([w["b"], w["d"], w["e"]])


def test_remove_persistent_portal_with_only_a_name_is_not_blank(
    p: ReferenceProvider, logins: dict[str, str]
) -> None:
    w = logins
    assert (
        remove(p, REMOVE_W, w["i"], int(w["n0"]), "iqn.a", portal(name="sym"))
        == ISDSC_TARGET_NOT_FOUND
    )


def test_remove_persistent_all_ports(p: ReferenceProvider, logins: dict[str, str]) -> None:
    w = logins
    assert (
        remove(p, REMOVE_W, w["i"], ISCSI_ALL_INITIATOR_PORTS, "iqn.a", portal("10.0.0.1", 3260))
        == 0
    )
    assert sorted(ids(p, "persistent_targets")) == sorted([w["b"], w["c"], w["d"], w["e"]])
    # -1 is the same ULONG bit pattern.
    assert remove(p, REMOVE_W, w["i"], -1, "iqn.a", None) == 0
    assert sorted(ids(p, "persistent_targets")) == sorted([w["d"], w["e"]])


def test_remove_persistent_portal_may_be_omitted(
    p: ReferenceProvider, logins: dict[str, str]
) -> None:
    w = logins
    outcome = p.call(
        REMOVE_W,
        {"InitiatorInstance": w["j"], "InitiatorPortNumber": int(w["m0"]), "TargetName": "iqn.a"},
    )
    assert outcome == Outcome(0, {}, None)
    assert w["d"] not in ids(p, "persistent_targets")


def add_named(p: ReferenceProvider, name: str, address: str = "10.0.0.1") -> dict[str, str]:
    initiator = p.setup({"initiator": "I"})
    port = p.setup({"port": "N", "initiator": initiator})
    login = p.setup(
        {
            "persistent_target": "PT",
            "initiator": initiator,
            "port": port,
            "target_name": name,
            "portal": portal(address, 3260),
        }
    )
    return {"i": initiator, "n": port, "pt": login}


def test_a_and_w_agree_on_text_the_code_page_holds(p: ReferenceProvider) -> None:
    w = add_named(p, "iqn.café")
    assert remove(p, REMOVE_A, w["i"], int(w["n"]), "iqn.café", None) == 0
    assert ids(p, "persistent_targets") == []


def test_a_loses_text_the_code_page_cannot_hold(p: ReferenceProvider) -> None:
    w = add_named(p, "iqn.диск")
    assert remove(p, REMOVE_A, w["i"], int(w["n"]), "iqn.диск", None) == ISDSC_TARGET_NOT_FOUND
    assert remove(p, REMOVE_W, w["i"], int(w["n"]), "iqn.диск", None) == 0


def test_a_turns_each_unrepresentable_character_into_a_question_mark(p: ReferenceProvider) -> None:
    w = add_named(p, "iqn.????")
    assert remove(p, REMOVE_W, w["i"], int(w["n"]), "iqn.диск", None) == ISDSC_TARGET_NOT_FOUND
    assert remove(p, REMOVE_A, w["i"], int(w["n"]), "iqn.дис", None) == ISDSC_TARGET_NOT_FOUND
    assert remove(p, REMOVE_A, w["i"], int(w["n"]), "iqn.диск", None) == 0


def test_a_converts_the_portal_address_too(p: ReferenceProvider) -> None:
    w = add_named(p, "iqn.t", address="диск.example")
    assert (
        remove(p, REMOVE_A, w["i"], int(w["n"]), "iqn.t", portal("диск.example", 3260))
        == ISDSC_TARGET_NOT_FOUND
    )
    w = add_named(p, "iqn.t", address="????.example")
    # The symbolic name is converted too, but it is never compared.
    assert (
        remove(p, REMOVE_A, w["i"], int(w["n"]), "iqn.t", portal("диск.example", 3260, "имя")) == 0
    )
    assert [row["portal"]["Address"] for row in p.observe("persistent_targets")] == ["диск.example"]


def test_a_converts_the_initiator_instance(p: ReferenceProvider) -> None:
    w = add_named(p, "iqn.t")
    assert (
        remove(p, REMOVE_A, w["i"] + "é", int(w["n"]), "iqn.t", None)
        == ISDSC_INITIATOR_INSTANCE_NOT_FOUND
    )
    assert (
        remove(p, REMOVE_A, w["i"].replace("R", "Я"), int(w["n"]), "iqn.t", None)
        == ISDSC_INITIATOR_INSTANCE_NOT_FOUND
    )


def test_a_follows_the_configured_code_page() -> None:
    p = ReferenceProvider(code_page="cp1251")
    p.reset()
    w = add_named(p, "iqn.диск")
    assert remove(p, REMOVE_A, w["i"], int(w["n"]), "iqn.café", None) == ISDSC_TARGET_NOT_FOUND
    assert remove(p, REMOVE_A, w["i"], int(w["n"]), "iqn.диск", None) == 0


def test_a_keeps_the_c1_bytes_windows_1252_defines(p: ReferenceProvider) -> None:
    # Windows maps 0x81 <-> U+0081 in code page 1252; U+0080 has no byte (0x80 is the euro).
    w = add_named(p, "iqn.\x81€")
    assert remove(p, REMOVE_A, w["i"], int(w["n"]), "iqn.\x81€", None) == 0
    w = add_named(p, "iqn.?")
    assert remove(p, REMOVE_A, w["i"], int(w["n"]), "iqn.\x80", None) == 0


# -- IVMGuestOS::Logoff -------------------------------------------------------------------


def vm(
    p: ReferenceProvider,
    power: str = "running",
    additions: bool = True,
    execute_access: bool = True,
    logons: int = 1,
) -> str:
    vm_id = p.setup(
        {
            "virtual_machine": "V",
            "power": power,
            "additions": additions,
            "execute_access": execute_access,
        }
    )
    for n in range(logons):
        p.setup({"logon_session": f"L{n}", "vm": vm_id})
    return vm_id


def test_logoff_success_removes_this_vms_logons(p: ReferenceProvider) -> None:
    target, other = vm(p, logons=2), vm(p, logons=1)
    outcome = p.call(LOGOFF, {"this": target})
    assert_async(outcome, S_OK, "outLogoffTask")
    assert [row["vm"] for row in p.observe("logon_sessions")] == [other]
    # Nobody is left: the task now reports ERROR_NO_SUCH_LOGON_SESSION.
    assert_async(p.call(LOGOFF, {"this": target}), NO_SUCH_LOGON_SESSION_WIN32, "outLogoffTask")


def test_logoff_with_no_logons_completes_with_no_such_logon_session(p: ReferenceProvider) -> None:
    assert_async(
        p.call(LOGOFF, {"this": vm(p, logons=0)}), NO_SUCH_LOGON_SESSION_WIN32, "outLogoffTask"
    )


def test_logoff_timeout_completes_with_timed_out_and_changes_nothing(p: ReferenceProvider) -> None:
    target = vm(p, logons=2)
    p.setup({"fault": "guest_timeout", "vm": target})
    assert_async(p.call(LOGOFF, {"this": target}), VM_E_TIMED_OUT, "outLogoffTask")
    assert len(p.observe("logon_sessions")) == 2


def test_logoff_faults_are_per_vm(p: ReferenceProvider) -> None:
    faulty, healthy = vm(p), vm(p)
    for kind in ("configuration_unknown", "guest_timeout", "unexpected_error"):
        p.setup({"fault": kind, "vm": faulty})
    assert_async(p.call(LOGOFF, {"this": healthy}), S_OK, "outLogoffTask")


# Each row adds one more condition that outranks the previous row's.
LOGOFF_PRECEDENCE = [
    ("unexpected_error", DISP_E_EXCEPTION),
    ("no_additions", VM_E_ADDITIONS_FEATURE_NOT_AVAIL),
    ("not_running", VM_E_VM_NOT_RUNNING),
    ("configuration_unknown", VM_E_VM_UNKNOWN),
    ("no_access", E_ACCESSDENIED_WIN32),
    ("null_pointer", E_POINTER),
]


@pytest.mark.parametrize("depth", range(1, len(LOGOFF_PRECEDENCE) + 1))
def test_logoff_direct_codes_in_precedence_order(p: ReferenceProvider, depth: int) -> None:
    conditions = {name for name, _ in LOGOFF_PRECEDENCE[:depth]}
    expected = LOGOFF_PRECEDENCE[depth - 1][1]
    target = vm(
        p,
        power="off" if "not_running" in conditions else "running",
        additions="no_additions" not in conditions,
        execute_access="no_access" not in conditions,
        logons=1,
    )
    p.setup({"fault": "guest_timeout", "vm": target})  # outranked by every direct code
    for kind in ("unexpected_error", "configuration_unknown"):
        if kind in conditions:
            p.setup({"fault": kind, "vm": target})
    args: dict[str, Any] = {"this": target}
    if "null_pointer" in conditions:
        args["outLogoffTask"] = None
    assert_direct(p.call(LOGOFF, args), expected, "outLogoffTask")
    assert len(p.observe("logon_sessions")) == 1


@pytest.mark.parametrize("power", ["off", "saved"])
def test_logoff_needs_a_running_vm(p: ReferenceProvider, power: str) -> None:
    assert_direct(
        p.call(LOGOFF, {"this": vm(p, power=power)}), VM_E_VM_NOT_RUNNING, "outLogoffTask"
    )


def test_logoff_unknown_vm(p: ReferenceProvider) -> None:
    assert_direct(p.call(LOGOFF, {"this": "vm-404"}), VM_E_VM_UNKNOWN, "outLogoffTask")
    assert_direct(
        p.call(LOGOFF, {"this": "vm-404", "outLogoffTask": None}), E_POINTER, "outLogoffTask"
    )


def test_logoff_task_handles_are_distinct(p: ReferenceProvider) -> None:
    first = p.call(LOGOFF, {"this": vm(p)})
    second = p.call(LOGOFF, {"this": vm(p)})
    assert first.outputs["outLogoffTask"] != second.outputs["outLogoffTask"]
