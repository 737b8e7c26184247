"""The backend's marshalling against a real PE double of iscsidsc.dll, on a Windows ABI.

These run inside a Windows CPython (ci/wine-backend.sh runs them under Wine) with
$CONFORMANCE_DOUBLES naming the folder of the doubles built by ci/doubles/gen_doubles.py and
mingw-w64. The double records every argument byte for byte, so what the backend meant to pass is
compared with what a C function compiled for Win64 received: the calling convention (13
arguments, a ULONGLONG in the middle, BYTE booleans), the structures as the C compiler lays them
out from the same metadata, and the A and W text. Elsewhere they skip.
"""

from __future__ import annotations

import ctypes
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

DOUBLES = os.environ.get("CONFORMANCE_DOUBLES", "")
pytestmark = pytest.mark.skipif(
    sys.platform != "win32" or not DOUBLES,
    reason="needs Windows (or Wine) and $CONFORMANCE_DOUBLES (ci/wine-backend.sh)")
ROOT = Path(__file__).resolve().parents[1]


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
    script.write_text("initiators=ROOT\\ISCSIPRT\\0000_0;ROOT\\ISCSIPRT\\0001_0\n",
                      encoding="ascii")
    monkeypatch.setenv("DOUBLE_LOG", str(log))
    monkeypatch.setenv("DOUBLE_SCRIPT", str(script))
    dll = ctypes.WinDLL(str(Path(DOUBLES) / "iscsidsc.dll"))  # type: ignore[attr-defined]
    dll.DoubleLayout.restype = ctypes.c_char_p
    return dll, log, json.loads(dll.DoubleLayout())


def records(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def test_the_c_compiler_lays_out_every_structure_as_ctypes_does(
        double: tuple[Any, Path, dict[str, Any]]) -> None:
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
    status, session = api.login(False, Login("iqn.t", True, "ROOT\\X", ISCSI_ANY_INITIATOR_PORT,
                                             portal, 0x0123456789ABCDEF, "key", True))
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
    first = check.decode("ISCSI_TARGET_PORTALW", group[c_layout["ISCSI_TARGET_PORTAL_GROUPW"]
                                                        ["offsets"]["Portals"]:], lay, c_layout)
    assert first == {"SymbolicName": {"text": "sym-é"}, "Address": {"text": "192.0.2.10"},
                     "Socket": 3261}
    assert text(by_fn["AddIScsiStaticTargetA"]["TargetName"], False) == "iqn.a:é"
    login = by_fn["LoginIScsiTargetA"]
    assert (login["IsInformationalSession"], login["IsPersistent"]) == (1, 1)
    assert login["InitiatorPortNumber"] == ISCSI_ANY_INITIATOR_PORT
    assert login["SecurityFlags"] == 0x0123456789ABCDEF and login["KeySize"] == 3
    assert bytes.fromhex(login["Key"]) == b"key"
    narrow = check.decode("ISCSI_TARGET_PORTALA", bytes.fromhex(login["TargetPortal"]), lay,
                          c_layout)
    assert narrow["Address"] == {"text": "192.0.2.10"} and narrow["Socket"] == 3261
    remove = by_fn["RemoveIScsiPersistentTargetW"]
    assert remove["InitiatorPortNumber"] == 7 and text(remove["TargetName"], True) == "iqn.t"
    assert by_fn["ReportIScsiPersistentLoginsA"]["PersistentLoginInfo"] is None
    session_id = bytes.fromhex(by_fn["LogoutIScsiTarget"]["UniqueSessionId"])
    assert int.from_bytes(session_id[:8], "little") == 0x1000
    assert int.from_bytes(session_id[8:], "little") == 1
