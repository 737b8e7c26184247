"""The backend's marshalling against real PE doubles (iscsidsc.dll, and a COM in-process server
for VDS and VirtualPC.Application activated through the registry), on a Windows ABI.

These run inside a Windows CPython (ci/wine-backend.sh runs them under Wine) with
$CONFORMANCE_DOUBLES naming the folder of the doubles built by ci/doubles/gen_doubles.py and
mingw-w64. The double records every argument byte for byte, so what the backend meant to pass is
compared with what a C function compiled for Win64 received: the calling convention (13
arguments, a ULONGLONG in the middle, BYTE booleans), the structures as the C compiler lays them
out from the same metadata, and the A and W text. Elsewhere they skip.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from conformance_providers.windows import _structs
from conformance_providers.windows._iscsi import (
    ISCSI_ANY_INITIATOR_PORT,
    IscsiDsc,
    Login,
    Portal,
    StaticTarget,
)
from support import ROOT

DOUBLES = os.environ.get("CONFORMANCE_DOUBLES", "")
pytestmark = pytest.mark.skipif(
    sys.platform != "win32" or not DOUBLES,
    reason="needs Windows (or Wine) and $CONFORMANCE_DOUBLES (ci/wine-backend.sh)",
)


def _checker() -> Any:
    path = ROOT / "ci" / "doubles" / "check_calls.py"
    spec = importlib.util.spec_from_file_location("check_calls", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def double(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Path, dict[str, Any]]:
    """The double loaded as iscsidsc.dll would be, logging to a fresh file."""
    log = tmp_path / "calls.jsonl"
    script = tmp_path / "script.txt"
    script.write_text(
        "initiators=ROOT\\ISCSIPRT\\0000_0;ROOT\\ISCSIPRT\\0001_0\n", encoding="ascii"
    )
    monkeypatch.setenv("DOUBLE_LOG", str(log))
    monkeypatch.setenv("DOUBLE_SCRIPT", str(script))
    dll = ctypes.WinDLL(str(Path(DOUBLES) / "iscsidsc.dll"))  # type: ignore[attr-defined]
    dll.DoubleLayout.restype = ctypes.c_char_p
    return dll, log, json.loads(dll.DoubleLayout())


def records(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def test_the_c_compiler_lays_out_every_structure_as_ctypes_does(
    double: tuple[Any, Path, dict[str, Any]],
) -> None:
    _, _, c_layout = double
    assert c_layout
    for name, layout in c_layout.items():
        ours = _structs.struct(name)
        if name.startswith("ISCSI_TARGET_PORTAL_GROUP"):  # a flexible array: header only
            assert ctypes.sizeof(ours) <= layout["size"] + 4, name
        else:
            assert ctypes.sizeof(ours) == layout["size"], name
        assert {f: getattr(ours, f).offset for f in layout["offsets"]} == layout["offsets"], name


def test_every_iscsidsc_call_arrives_as_meant(double: tuple[Any, Path, dict[str, Any]]) -> None:
    dll, log, c_layout = double
    check = _checker()
    lay = check.layouts()
    api = IscsiDsc(dll, code_page="cp1252")
    portal = Portal("sym-é", "192.0.2.10", 3261)
    assert api.initiators() == ["ROOT\\ISCSIPRT\\0000_0", "ROOT\\ISCSIPRT\\0001_0"]
    api.add_static(True, StaticTarget("iqn.w:é", "alias", 2, True, (portal, portal)))
    api.add_static(False, StaticTarget("iqn.a:é", None, 0, False, None))
    api.remove_static(False, "iqn.a:é")
    status, session = api.login(
        False,
        Login(
            "iqn.t",
            True,
            "ROOT\\X",
            ISCSI_ANY_INITIATOR_PORT,
            portal,
            0x0123456789ABCDEF,
            "key",
            True,
        ),
    )
    assert status == 0 and session == f"{0x1000:016x}-{1:016x}"
    api.remove_persistent(True, "ROOT\\X", 7, "iqn.t", portal)
    api.report_persistent(False, False)
    api.logout(session)
    calls = records(log)
    problems = [p for r in calls for p in check.check_record(r, lay, c_layout)]
    assert not problems
    by_fn = {r["fn"]: r["args"] for r in calls}

    def text(value: str, wide: bool) -> str:
        return bytes.fromhex(value).decode("utf-16-le" if wide else "cp1252")

    add_w = by_fn["AddIScsiStaticTargetW"]
    assert text(add_w["TargetName"], True) == "iqn.w:é" and add_w["TargetFlags"] == 2
    assert add_w["Persist"] == 1 and add_w["Mappings"] is None
    group = bytes.fromhex(add_w["PortalGroup"])
    assert int.from_bytes(group[:4], "little") == 2
    first = check.decode(
        "ISCSI_TARGET_PORTALW",
        group[c_layout["ISCSI_TARGET_PORTAL_GROUPW"]["offsets"]["Portals"] :],
        lay,
        c_layout,
    )
    assert first == {
        "SymbolicName": {"text": "sym-é"},
        "Address": {"text": "192.0.2.10"},
        "Socket": 3261,
    }
    assert text(by_fn["AddIScsiStaticTargetA"]["TargetName"], False) == "iqn.a:é"
    login = by_fn["LoginIScsiTargetA"]
    assert (login["IsInformationalSession"], login["IsPersistent"]) == (1, 1)
    assert login["InitiatorPortNumber"] == ISCSI_ANY_INITIATOR_PORT
    assert login["SecurityFlags"] == 0x0123456789ABCDEF and login["KeySize"] == 3
    assert bytes.fromhex(login["Key"]) == b"key"
    narrow = check.decode(
        "ISCSI_TARGET_PORTALA", bytes.fromhex(login["TargetPortal"]), lay, c_layout
    )
    assert narrow["Address"] == {"text": "192.0.2.10"} and narrow["Socket"] == 3261
    remove = by_fn["RemoveIScsiPersistentTargetW"]
    assert remove["InitiatorPortNumber"] == 7 and text(remove["TargetName"], True) == "iqn.t"
    assert by_fn["ReportIScsiPersistentLoginsA"]["PersistentLoginInfo"] is None
    session_id = bytes.fromhex(by_fn["LogoutIScsiTarget"]["UniqueSessionId"])
    assert int.from_bytes(session_id[:8], "little") == 0x1000
    assert int.from_bytes(session_id[8:], "little") == 1


# =========================================================================== the COM double


def _world() -> Any:
    path = ROOT / "ci" / "doubles" / "com_world.py"
    spec = importlib.util.spec_from_file_location("com_world", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


WORLD = _world()


class ComDouble:
    """The COM double registered in the prefix's HKCR, answering from a script of this test."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.log = tmp_path / "com.jsonl"
        self.script = tmp_path / "com-script.txt"
        self.monkeypatch = monkeypatch
        self.layout: dict[str, Any] = {}
        self.rescript()
        monkeypatch.setenv("DOUBLE_LOG", str(self.log))
        monkeypatch.setenv("DOUBLE_COM_SCRIPT", str(self.script))
        monkeypatch.setenv("CONFORMANCE_WINDOWS_COM_INPROC", "1")

    def rescript(self, changes: dict[tuple[str, str], str] | None = None) -> None:
        """The world the next activation reads (each CoCreateInstance starts a new one)."""
        self.script.write_text(WORLD.script(changes), encoding="utf-8")

    def records(self) -> list[dict[str, Any]]:
        return records(self.log) if self.log.exists() else []

    def problems(self) -> list[str]:
        check = _checker()
        lay = check.layouts()
        return [p for r in self.records() for p in check.check_record(r, lay, self.layout)]

    def calls(self, fn: str) -> list[dict[str, Any]]:
        return [r["args"] for r in self.records() if r["fn"] == fn]


def _register(dll: str) -> None:
    winreg: Any = importlib.import_module("winreg")
    root = winreg.HKEY_CLASSES_ROOT
    for clsid in (WORLD.CLSID_VDS_LOADER, WORLD.CLSID_VPC_DOUBLE):
        with winreg.CreateKey(root, rf"CLSID\{{{clsid}}}\InprocServer32") as key:
            winreg.SetValueEx(key, "", 0, winreg.REG_SZ, dll)
            winreg.SetValueEx(key, "ThreadingModel", 0, winreg.REG_SZ, "Both")
    with winreg.CreateKey(root, rf"{WORLD.PROGID_VPC}\CLSID") as key:
        winreg.SetValueEx(key, "", 0, winreg.REG_SZ, f"{{{WORLD.CLSID_VPC_DOUBLE}}}")


def _unregister() -> None:
    winreg: Any = importlib.import_module("winreg")
    classes = (WORLD.CLSID_VDS_LOADER, WORLD.CLSID_VPC_DOUBLE)
    for path in [
        *(rf"CLSID\{{{c}}}\InprocServer32" for c in classes),
        *(rf"CLSID\{{{c}}}" for c in classes),
        rf"{WORLD.PROGID_VPC}\CLSID",
        WORLD.PROGID_VPC,
    ]:
        with contextlib.suppress(OSError):
            winreg.DeleteKey(winreg.HKEY_CLASSES_ROOT, path)


@pytest.fixture()
def com(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The COM double, activated through the registry as VDS and Virtual PC would be; the
    registration is removed afterwards (the needs-Windows tests expect no Virtual PC)."""
    double = ComDouble(tmp_path, monkeypatch)
    dll = Path(DOUBLES) / "comdouble.dll"
    loaded = ctypes.WinDLL(str(dll))  # type: ignore[attr-defined]
    loaded.DoubleLayout.restype = ctypes.c_char_p
    double.layout = json.loads(loaded.DoubleLayout())
    _register(str(dll))
    try:
        yield double
    finally:
        _unregister()


def _ole() -> Any:
    from conformance_providers.windows._com import Ole

    return Ole()


def _guid_bytes(text: str) -> str:
    import uuid

    return uuid.UUID(text).bytes_le.hex()


def _refs_left(double: ComDouble) -> dict[str, int]:
    """Each object's last reference count, for those the backend did not release to zero."""
    last: dict[str, int] = {}
    for record in double.records():
        if "refs" in record:
            last[record["this"]] = record["refs"]
    return {name: refs for name, refs in last.items() if refs}


def test_the_c_compiler_lays_out_every_com_structure_as_ctypes_does(com: ComDouble) -> None:
    assert {"VARIANT", "DISPPARAMS", "EXCEPINFO", "VDS_ASYNC_OUTPUT"} <= set(com.layout)
    for name, layout in com.layout.items():
        ours = _structs.struct(name)
        assert ctypes.sizeof(ours) == layout["size"], name
        assert {f: getattr(ours, f).offset for f in layout["offsets"]} == layout["offsets"], name


def test_vds_runs_through_the_com_double_as_the_metadata_lays_it_out(com: ComDouble) -> None:
    from conformance_providers.windows._layouts import CONSTANTS as C
    from conformance_providers.windows._vds import LoginRequest, VdsService

    ole = _ole()
    try:
        service = VdsService(ole)
        try:
            adapter, target, (p0, p1) = WORLD.ADAPTER_ID, WORLD.TARGET_ID, WORLD.PORTAL_IDS
            assert service.adapters() == [(adapter, WORLD.ADAPTER_NAME)]
            assert service.targets() == [(target, WORLD.TARGET_IQN)]
            assert service.portals() == [(p0, "192.0.2.20", 3260), (p1, "192.0.2.21", 3260)]
            assert service.initiator_portals(adapter) == (
                0,
                [(WORLD.INITIATOR_PORTAL_ID, "192.0.2.5")],
            )
            assert service.adapter_properties(adapter) == (0, adapter, WORLD.ADAPTER_NAME)
            login = service.login(
                adapter,
                LoginRequest(
                    C["VDS_ILT_MANUAL"], target, p0, WORLD.INITIATOR_PORTAL_ID, 0x2, True, False, 1
                ),
            )
            assert (login.hresult, login.completion) == (0, 0) and login.handle
            assert service.logout_from_target(adapter, target).completion == 0
            created, group = service.create_portal_group(target)
            assert created.completion == 0 and group is not None
            assert service.group_properties(group) == (0, group, 1)
            assert service.group_target(group) == (0, target)
            assert service.group_portals(group) == (0, [p0])
            assert service.add_portal(group, p1).completion == 0
            assert service.remove_portal(group, p0).completion == 0
            assert service.delete_portal_group(group).completion == 0
        finally:
            service.close()
    finally:
        ole.close()
    assert not com.problems()
    assert not _refs_left(com), "references the backend kept"
    (load,) = com.calls("IVdsServiceLoader::LoadService")
    assert load["pwszMachineName"] is None and load["ppService"] == "ptr"
    assert com.calls("IVdsService::QueryProviders")[0]["masks"] == C["VDS_QUERY_HARDWARE_PROVIDERS"]
    (sent,) = com.calls("IVdsIscsiInitiatorAdapter::LoginToTarget")
    assert sent == {
        "loginType": C["VDS_ILT_MANUAL"],
        "targetId": _guid_bytes(target),
        "targetPortalId": _guid_bytes(p0),
        "initiatorPortalId": _guid_bytes(WORLD.INITIATOR_PORTAL_ID),
        "ulLoginFlags": 2,
        "bHeaderDigest": 1,
        "bDataDigest": 0,
        "authType": 1,
        "ppAsync": "ptr",
    }
    assert com.calls("IVdsIscsiInitiatorAdapter::LogoutFromTarget")[0]["targetId"] == _guid_bytes(
        target
    )
    assert com.calls("IVdsIscsiPortalGroup::AddPortal")[0]["portalId"] == _guid_bytes(p1)
    assert com.calls("IVdsIscsiPortalGroup::RemovePortal")[0]["portalId"] == _guid_bytes(p0)
    waits = com.calls("IVdsAsync::Wait")
    assert len(waits) == 6 and all(w == {"pHrResult": "ptr", "pAsyncOut": "ptr"} for w in waits)


def test_vds_failures_arrive_where_the_pages_say(com: ComDouble) -> None:
    from conformance_providers.windows._com import ComError
    from conformance_providers.windows._vds import VdsService

    not_found, deleted, denied = 0x80042405, 0x8004240B, 0x80070005
    com.rescript(
        {
            ("adapter", "LogoutFromTarget"): hex(not_found),
            ("adapter", "QueryInitiatorPortals"): hex(denied),
            ("done", "Wait.pHrResult"): hex(deleted),
            ("group", "RemovePortal.ppAsync"): "@waitfails",
            ("waitfails", "interfaces"): "IVdsAsync",
            ("waitfails", "Wait"): hex(denied),
            ("group", "GetTarget"): hex(deleted),
        }
    )
    ole = _ole()
    try:
        service = VdsService(ole)
        try:
            adapter, target, portal = WORLD.ADAPTER_ID, WORLD.TARGET_ID, WORLD.PORTAL_IDS[0]
            service.adapters()
            service.targets()
            logout = service.logout_from_target(adapter, target)
            assert (logout.hresult, logout.handle, logout.completion) == (not_found, None, None)
            assert service.initiator_portals(adapter) == (denied, None)
            _, group = service.create_portal_group(target)
            assert group is not None
            added = service.add_portal(group, portal)
            assert (added.hresult, added.completion) == (0, deleted)
            removed = service.remove_portal(group, portal)
            assert (removed.hresult, removed.completion) == (0, denied)  # Wait's own failure
            assert service.group_target(group) == (deleted, None)
        finally:
            service.close()
    finally:
        ole.close()
    assert not com.problems()
    com.rescript({("loader", "LoadService"): hex(denied)})
    ole = _ole()
    try:
        with pytest.raises(ComError, match="LoadService"):
            VdsService(ole)
    finally:
        ole.close()


def test_virtual_pc_runs_through_idispatch_on_the_com_double(com: ComDouble) -> None:
    from conformance_providers.windows._vpc import CALL, GET, PUT, VirtualPc

    vm = WORLD.VM_NAME
    ole = _ole()
    try:
        vpc = VirtualPc(ole)
        assert vpc.has_vm(vm) and not vpc.has_vm("no such machine")
        assert vpc.guest(vm, "ComputerName", GET, ()) == (0, "WIN7-GUEST")
        assert vpc.guest(vm, "HeartbeatPercentage", GET, ()) == (0, 100)
        assert vpc.guest(vm, "IsHeartbeating", GET, ()) == (0, True)
        assert vpc.guest(vm, "IsHostTimeSyncEnabled", PUT, (True,)) == (0, None)
        assert vpc.guest(vm, "IsHostTimeSyncEnabled", GET, ()) == (0, True)
        assert vpc.guest(vm, "SetParameter", CALL, ("clé", "valeur é")) == (0, None)
        assert vpc.guest(vm, "GetParameter", CALL, ("clé",)) == (0, "valeur é")
        assert vpc.guest(vm, "IsUserLoggedOn", CALL, (False,)) == (0, False)
        task = vpc.guest_task(vm, "Logoff", ())
        assert (task.hresult, task.completion) == (0, 0) and task.handle
        vpc.app.release()
    finally:
        ole.close()
    assert not com.problems()
    assert not _refs_left(com), "references the backend kept"
    invokes = [r for r in com.records() if r["fn"] == "IDispatch::Invoke"]
    put = next(r["args"] for r in invokes if r["args"]["wFlags"] == 4)
    assert put["pDispParams"]["named"] == [-3] and put["pVarResult"] is None
    (value,) = put["pDispParams"]["args"]
    assert value["variant"][:4] == "0b00" and value["variant"][16:20] == "ffff"  # VARIANT_TRUE
    set_call = next(r["args"] for r in invokes if r["member"] == "SetParameter")
    last, first = set_call["pDispParams"]["args"]  # IDispatch takes arguments last first
    assert bytes.fromhex(first["bstr"]).decode("utf-16-le") == "clé"
    assert bytes.fromhex(last["bstr"]).decode("utf-16-le") == "valeur é"
    wait = next(r["args"] for r in invokes if r["member"] == "WaitForCompletion")
    assert wait["wFlags"] == 1 and wait["pDispParams"]["args"][0]["variant"][:4] == "0300"


def test_virtual_pc_failures_come_from_excepinfo_or_invoke(com: ComDouble) -> None:
    from conformance_providers.windows._com import ComError
    from conformance_providers.windows._vpc import GET, PUT, VirtualPc

    vm = WORLD.VM_NAME
    com.rescript(
        {
            ("guest", ".ComputerName"): "!0x80070005",
            ("guest", ".OSName"): "!!0x80020003",
            ("guest", ".IsHostTimeSyncEnabled.put"): "!0x80004005",
            ("task", ".Error"): "i:-2147024891",
        }
    )
    ole = _ole()
    try:
        vpc = VirtualPc(ole)
        assert vpc.guest(vm, "ComputerName", GET, ()) == (0x80070005, None)
        assert vpc.guest(vm, "OSName", GET, ()) == (0x80020003, None)
        assert vpc.guest(vm, "IsHostTimeSyncEnabled", PUT, (False,)) == (0x80004005, None)
        assert vpc.guest_task(vm, "Shutdown", (True,)).completion == 0x80070005
        with pytest.raises(ComError, match="GetIDsOfNames"):
            vpc.guest(vm, "NoSuchMember", GET, ())
        vpc.app.release()
    finally:
        ole.close()
    assert not com.problems()


def test_the_provider_borrows_and_calls_through_the_com_double(com: ComDouble) -> None:
    from conformance_providers.windows import WindowsProvider

    config = {
        "initiator_adapters": {"A1": {"name": WORLD.ADAPTER_NAME}},
        "targets": {"T1": {"iqn": WORLD.TARGET_IQN}},
        "portals": {"P1": {"address": "192.0.2.20", "port": 3260}},
        "virtual_machines": {
            "VM1": {
                "name": WORLD.VM_NAME,
                "power": "running",
                "additions": True,
                "execute_access": True,
            }
        },
    }
    windows = WindowsProvider(config=config)
    try:
        adapter = windows.setup({"initiator_adapter": "A1"})
        target = windows.setup({"target": "T1"})
        portal = windows.setup({"portal": "P1"})
        group = windows.setup({"portal_group": "G1", "target": target, "portals": [portal]})
        assert windows.call(
            "IVdsIscsiPortalGroup::GetTarget", {"this": group, "ppTarget": "out"}
        ).outputs == {"ppTarget": target}
        outcome = windows.call(
            "IVdsIscsiInitiatorAdapter::GetProperties",
            {"this": adapter, "pInitiatorAdapterProp": "out"},
        )
        assert outcome.outputs["pInitiatorAdapterProp"] == {
            "id": adapter,
            "pwszName": WORLD.ADAPTER_NAME,
        }
        vm = windows.setup(
            {
                "virtual_machine": "VM1",
                "power": "running",
                "additions": True,
                "execute_access": True,
            }
        )
        outcome = windows.call(
            "IVMGuestOS::get_ComputerName", {"this": vm, "guestComputerName": "out"}
        )
        assert outcome.outputs == {"guestComputerName": "WIN7-GUEST"}
        windows.reset()  # the ledger deletes the group it made
    finally:
        windows.close()
    assert com.calls("IVdsIscsiPortalGroup::Delete")
    assert not com.problems()
