"""The COM double's default script: a VDS service with one iSCSI initiator adapter and one storage
array, and a Virtual PC with one machine, as the backend finds them on a real host.

    python ci/doubles/com_world.py > script.txt     # what $DOUBLE_COM_SCRIPT names
    python ci/doubles/com_world.py --reg DLL        # a .reg file registering the double
    python ci/doubles/com_world.py --unreg          # a .reg file removing that registration

`script(**changes)` gives the same text with lines replaced or added ({(object, key): value});
the tests script error paths that way. The objects are generic (com_runtime.c); only this text
says that `adapter` is an IVdsIscsiInitiatorAdapter named "Microsoft iSCSI Initiator".
"""

from __future__ import annotations

import sys
from typing import Any

CLSID_VDS_LOADER = "9c38ed61-d565-4728-aeee-c80952f0ecde"  # vds.h (_layouts.GUIDS)
# The double's own class for VirtualPC.Application (Virtual PC's is not the double's to take).
CLSID_VPC_DOUBLE = "6b1f3e0a-52c4-4d8e-9a1b-c0f0e11d0b1e"
PROGID_VPC = "VirtualPC.Application"

ADAPTER_ID = "a1000000-0000-4000-8000-000000000001"
INITIATOR_PORTAL_ID = "a1000000-0000-4000-8000-000000000002"
TARGET_ID = "a1000000-0000-4000-8000-000000000003"
PORTAL_IDS = ("a1000000-0000-4000-8000-000000000004", "a1000000-0000-4000-8000-000000000005")
ADAPTER_NAME = "Microsoft iSCSI Initiator"
TARGET_IQN = "iqn.1991-05.com.contoso:array1-lun-test"
VM_NAME = "Windows XP Mode"
VDS_IPT_TEXT, VDS_IPT_IPV4, VDS_ASYNCOUT_CREATEPORTALGROUP = 0, 1, 63

GUEST = {  # IVMGuestOS's members as the automation types the pages give (the domain's Windows 7)
    "CSDVersion": "s:Service Pack 1",
    "CanShutdown": "b:1",
    "ComputerName": "s:WIN7-GUEST",
    "HeartbeatPercentage": "i:100",
    "IntegrationComponentsVersion": "s:6.1.7601.17514",
    "IsHeartbeating": "b:1",
    "IsHostTimeSyncEnabled": "b:0",
    "MultipleUserSessionsAllowed": "b:1",
    "OSBuildNumber": "s:7601",
    "OSMajorVersion": "s:6",
    "OSMinorVersion": "s:1",
    "OSName": "s:Windows 7 Enterprise",
    "OSPlatformId": "s:2",
    "OSVersion": "s:6.1.7601",
    "ProductType": "s:0x0000001",
    "ScreenLocked": "b:0",
    "ServicePackMajor": "s:1",
    "ServicePackMinor": "s:0",
    "SuiteMask": "s:0x00000100",
    "TerminalServerPort": "i:3389",
    "TerminalServicesInitialized": "b:1",
    "GetParameter": "s:",
    "SetParameter": "",
    "IsUserLoggedOn": "b:0",
    "InstallIntegrationComponents": "",
    "Logoff": "@task",
    "Restart": "@task",
    "Shutdown": "@task",
}


def lines() -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}

    def obj(name: str, *interfaces: str, **props: Any) -> None:
        out[(name, "interfaces")] = " ".join(interfaces)
        for key, value in props.items():
            out[(name, key.replace("__", "."))] = str(value)

    prop = "GetProperties.pInitiatorAdapterProp"
    out[("loader", "clsid")] = CLSID_VDS_LOADER
    obj("loader", "IVdsServiceLoader", LoadService__ppService="@service")
    obj(
        "service",
        "IVdsService",
        "IVdsServiceIscsi",
        QueryProviders__ppEnum="[hwprovider]",
        QueryInitiatorAdapters__ppEnum="[adapter]",
    )
    obj("hwprovider", "IVdsHwProvider", QuerySubSystems__ppEnum="[subsystem]")
    obj(
        "subsystem",
        "IVdsSubSystemIscsi",
        QueryTargets__ppEnum="[target]",
        QueryPortals__ppEnum=f"[{','.join(f'portal{i}' for i in range(len(PORTAL_IDS)))}]",
    )
    obj(
        "adapter",
        "IVdsIscsiInitiatorAdapter",
        **{f"{prop}.id": ADAPTER_ID, f"{prop}.pwszName": ADAPTER_NAME},
        QueryInitiatorPortals__ppEnum="[iportal]",
        LoginToTarget__ppAsync="@done",
        LogoutFromTarget__ppAsync="@done",
    )
    iprop = "GetProperties.pInitiatorPortalProp"
    obj(
        "iportal",
        "IVdsIscsiInitiatorPortal",
        **{
            f"{iprop}.id": INITIATOR_PORTAL_ID,
            f"{iprop}.address.type": VDS_IPT_IPV4,
            f"{iprop}.address.ipv4Address": 0xC0000205,
            f"{iprop}.ulPortIndex": 1,
        },
    )  # 192.0.2.5
    tprop = "GetProperties.pTargetProp"
    obj(
        "target",
        "IVdsIscsiTarget",
        **{
            f"{tprop}.id": TARGET_ID,
            f"{tprop}.pwszIscsiName": TARGET_IQN,
            f"{tprop}.pwszFriendlyName": "array1 LUN",
        },
        CreatePortalGroup__ppAsync="+created",
    )
    for i, portal in enumerate(PORTAL_IDS):
        pprop = "GetProperties.pPortalProp"
        obj(
            f"portal{i}",
            "IVdsIscsiPortal",
            **{
                f"{pprop}.id": portal,
                f"{pprop}.address.type": VDS_IPT_TEXT,
                f"{pprop}.address.wszTextAddress": f"192.0.2.{20 + i}",
                f"{pprop}.address.ulPort": 3260,
            },
        )
    obj(
        "created",
        "IVdsAsync",
        **{
            "Wait.pHrResult": 0,
            "Wait.pAsyncOut.type": VDS_ASYNCOUT_CREATEPORTALGROUP,
            "Wait.pAsyncOut.Anonymous.cpg.pPortalGroupUnk": "+group",
        },
    )
    gprop = "GetProperties.pPortalGroupProp"
    obj(
        "group",
        "IVdsIscsiPortalGroup",
        **{f"{gprop}.id": "{new}", f"{gprop}.tag": 1},
        GetTarget__ppTarget="@target",
        QueryAssociatedPortals__ppEnum="[portal0]",
        AddPortal__ppAsync="@done",
        RemovePortal__ppAsync="@done",
        Delete__ppAsync="@done",
    )
    obj("done", "IVdsAsync", **{"Wait.pHrResult": 0})

    out[("app", "clsid")] = CLSID_VPC_DOUBLE
    obj(
        "app",
        "IDispatch",
        **{f".FindVirtualMachine(s:{VM_NAME})": "@vm", ".FindVirtualMachine": ""},
    )
    obj("vm", "IDispatch", **{".GuestOS": "@guest"})
    obj("guest", "IDispatch", **{f".{member}": value for member, value in GUEST.items()})
    obj("task", "IDispatch", **{".WaitForCompletion": "", ".Error": "i:0"})
    return out


def script(changes: dict[tuple[str, str], str] | None = None) -> str:
    table = {**lines(), **(changes or {})}
    return "".join(f"{name}\t{key}\t{value}\n" for (name, key), value in table.items())


def registration(dll: str | None) -> str:
    """A .reg file for `wine regedit`: the in-process server for both classes and the ProgID
    (ThreadingModel Both: served directly in the backend's multithreaded apartment); with no
    DLL, the file that removes all of it."""
    keys = [
        f"HKEY_CLASSES_ROOT\\CLSID\\{{{CLSID_VDS_LOADER}}}",
        f"HKEY_CLASSES_ROOT\\CLSID\\{{{CLSID_VPC_DOUBLE}}}",
        f"HKEY_CLASSES_ROOT\\{PROGID_VPC}",
    ]
    out = ["Windows Registry Editor Version 5.00", ""]
    if dll is None:
        return "\r\n".join([*out, *(f"[-{k}]" for k in keys), ""])
    path = dll.replace("\\", "\\\\")
    for key in keys[:2]:
        out += [f"[{key}\\InprocServer32]", f'@="{path}"', '"ThreadingModel"="Both"', ""]
    out += [f"[{keys[2]}\\CLSID]", f'@="{{{CLSID_VPC_DOUBLE}}}"', ""]
    return "\r\n".join(out)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--reg"]:
        sys.stdout.write(registration(argv[1]))
    elif argv[:1] == ["--unreg"]:
        sys.stdout.write(registration(None))
    else:
        sys.stdout.write(script())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
