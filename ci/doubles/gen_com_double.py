"""Generate the C source of the COM double (VDS objects, VirtualPC.Application) from the layouts.

    python ci/doubles/gen_com_double.py --out DIR   # writes DIR/comdouble.c and DIR/comdouble.def

Every interface of providers/windows/_layouts.py (IUnknown, IDispatch, IEnumVdsObject and the VDS
interfaces, with win32metadata's IIDs and slots) gets one C function per method with the
metadata's exact signature, and a vtable in the metadata's slot order (base interfaces' slots
first). Each function appends one JSON line to $DOUBLE_LOG: `Interface::Method`, the interface
of the pointer it was called through, the object, and each argument as it arrived (numbers,
GUIDs and in-structures byte for byte, strings as their bytes, DISPPARAMS with each VARIANT and
BSTR length prefix, out-pointers as NULL or not). Then it answers from the script
($DOUBLE_COM_SCRIPT, see com_runtime.c): its HRESULT, objects through PVOID* out-parameters,
structures filled member by member from the same layouts, or the behaviour COM itself defines
(QueryInterface, AddRef, Release, IEnumVdsObject::Next, IDispatch::GetIDsOfNames and Invoke).
Activation is the ordinary in-process server's: DllGetClassObject serves the script's objects
that carry a `clsid`, registered under HKCR\\CLSID\\{...}\\InprocServer32 (ThreadingModel Both)
and, for Virtual PC, HKCR\\VirtualPC.Application\\CLSID. `DoubleLayout()` returns the C layout of
every structure the interfaces take. The double only serves tests of the backend's marshalling,
activation and error paths; it is never a conformance target.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path
from typing import Any

from check_calls import WIDTHS, layouts
from gen_doubles import c_name, c_type, layout_json, struct_source

DLL = "comdouble.dll"
# The behaviours COM defines, written once in com_runtime.c: (interface, method) -> function.
SPECIAL = {
    ("IUnknown", "QueryInterface"): "do_QueryInterface",
    ("IUnknown", "AddRef"): "do_AddRef",
    ("IUnknown", "Release"): "do_Release",
    ("IEnumVdsObject", "Next"): "do_Next",
    ("IDispatch", "GetIDsOfNames"): "do_GetIDsOfNames",
    ("IDispatch", "Invoke"): "do_Invoke",
}
# Pointer parameters the caller fills (recorded by content); every other pointer is written by
# the callee and recorded as NULL or not.
IN_POINTERS = {"GUID*", "DISPPARAMS*"}
# Handled by com_runtime.c through the SDK's own declarations, never filled from the script.
AUTOMATION = {"VARIANT", "DISPPARAMS", "EXCEPINFO"}
# The SDK's declaration of each structure the metadata also describes: the C compiler holds the
# two to the same size (a metadata layout that differs from the headers fails the build).
SDK_TWINS = {"VARIANT": "VARIANT", "DISPPARAMS": "DISPPARAMS", "EXCEPINFO": "EXCEPINFO"}
# (mingw-w64's vds.h cannot be included: it redeclares what vdslun.h declares.)


def chain(lay: Any, name: str) -> list[str]:
    """The interface and its bases, IUnknown first."""
    out = []
    while name:
        out.insert(0, name)
        name = lay.INTERFACES[name]["base"]
    return out


def slots(lay: Any, name: str) -> list[tuple[str, str]]:
    """(declaring interface, method) for every vtable slot, in the metadata's slot order."""
    found = {}
    for owner in chain(lay, name):
        for method, decl in lay.INTERFACES[owner]["methods"].items():
            found[decl["slot"]] = (owner, method)
    if sorted(found) != list(range(len(found))):
        raise SystemExit(f"gen_com_double: {name}'s slots are not 0..{len(found) - 1}")
    return [found[i] for i in range(len(found))]


def wanted_structs(lay: Any) -> list[str]:
    """Every structure an interface method takes, and what it holds by value, in C order."""
    order: list[str] = []
    pointed: list[str] = []

    def visit(text: str) -> None:
        base = text.rstrip("*").split("[")[0]
        if base in lay.STRUCTS and base not in order:
            for _, member in lay.STRUCTS[base]["fields"]:
                (pointed.append if member.endswith("*") else visit)(member)
            order.append(base)

    for interface in lay.INTERFACES.values():
        for decl in interface["methods"].values():
            for _, text in decl["params"]:
                visit(text)
    while pointed:
        visit(pointed.pop(0))
    return order


def filled_structs(lay: Any) -> list[str]:
    """The structures a callee writes (out-parameters) and what they hold, inner ones first."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order or name in AUTOMATION:
            return
        for _, member in lay.STRUCTS[name]["fields"]:
            if member in lay.STRUCTS:
                visit(member)
        order.append(name)

    for interface in lay.INTERFACES.values():
        for decl in interface["methods"].values():
            for _, text in decl["params"]:
                if text.endswith("*") and text[:-1] in lay.STRUCTS and text not in IN_POINTERS:
                    visit(text[:-1])
    return order


def fill_source(lay: Any, name: str) -> str:
    """fill_<struct>(call, key, p): each member from the script's `key.member`, by its type."""
    lines = []
    for field, text in lay.STRUCTS[name]["fields"]:
        key = f'snprintf(key, sizeof key, "%s.{field}", prefix);'
        if text == "GUID":
            action = f"out_guid(c, key, &p->{field});"
        elif text == "PWSTR":
            action = f"out_wstr_alloc(c, key, &p->{field});"
        elif text == "PVOID":
            action = f"out_object(c, key, &p->{field});"
        elif text.startswith("WCHAR[") and text != "WCHAR[]":
            action = f"out_wchars(c, key, p->{field}, {text[6:-1]});"
        elif text.startswith("BYTE[") and text != "BYTE[]":
            action = f"out_bytes(c, key, p->{field}, {text[5:-1]});"
        elif text in WIDTHS:
            action = f"out_number(c, key, &p->{field}, sizeof p->{field});"
        elif text in lay.STRUCTS and text not in AUTOMATION:
            action = f"fill_{c_name(text)}(c, key, &p->{field});"
        else:
            continue
        lines.append(f"    {key} {action}\n")
    return (
        f"static void fill_{c_name(name)}(Call *c, const char *prefix, {c_name(name)} *p)\n"
        "{\n    char key[256];\n" + "".join(lines) + "}\n"
    )


def record(param: str, text: str, params: list[tuple[str, str]]) -> str:
    """The statement recording one argument."""
    key = f'    put_key(&c, "{param}"); '
    if text in WIDTHS:
        return key + f"put_num(&c, (unsigned long long){param});\n"
    if text == "GUID":
        return key + f"put_bytes(&c, &{param}, sizeof {param});\n"
    if text == "GUID*":
        return key + f"put_bytes(&c, {param}, sizeof(GUID));\n"
    if text == "PWSTR":
        return key + f"put_wstr(&c, {param});\n"
    if text == "DISPPARAMS*":
        return key + f"put_dispparams(&c, {param});\n"
    if text == "PWSTR*" and any(p == "cNames" for p, _ in params):  # IDispatch's names
        return key + f"put_wstr_list(&c, {param}, cNames);\n"
    return key + f"put_ptr(&c, (const void *){param});\n"


def outputs(param: str, text: str, lay: Any) -> tuple[str, str]:
    """(what a success writes through an out-parameter, what a failure writes)."""
    if text in IN_POINTERS or not text.endswith("*"):
        return "", ""
    base = text[:-1]
    if base == "PVOID":
        return (
            f'        if ({param}) *{param} = NULL;\n        out_object(&c, "{param}", {param});\n',
            f"        if ({param}) *{param} = NULL;\n",
        )
    if base in lay.STRUCTS and base not in AUTOMATION:
        return f'        if ({param}) fill_{c_name(base)}(&c, "{param}", {param});\n', ""
    if base in WIDTHS:
        return f'        out_number(&c, "{param}", {param}, sizeof *{param});\n', ""
    if base == "PWSTR":
        return (
            f'        out_wstr_alloc(&c, "{param}", {param});\n',
            f"        if ({param}) *{param} = NULL;\n",
        )
    return "", ""


def method_source(lay: Any, interface: str, method: str) -> str:
    decl = lay.INTERFACES[interface]["methods"][method]
    params = list(decl["params"])
    returns = "HRESULT" if decl["returns"] == "LONG" else c_type(decl["returns"], lay.STRUCTS)
    signature = ", ".join(["Face *self", *(f"{c_type(t, lay.STRUCTS)} {p}" for p, t in params)])
    body = [
        f"    Call c;\n    {returns} hr;\n",
        f'    begin_call(&c, self, "{interface}", "{method}");\n',
        *(record(p, t, params) for p, t in params),
    ]
    special = SPECIAL.get((interface, method))
    if special:
        body.append(f"    hr = {special}(&c, self{''.join(', ' + p for p, _ in params)});\n")
    else:
        success = "".join(outputs(p, t, lay)[0] for p, t in params)
        failure = "".join(outputs(p, t, lay)[1] for p, t in params)
        body.append("    hr = scripted_hr(&c);\n")
        if success:
            body.append(f"    if (SUCCEEDED(hr)) {{\n{success}    }}")
            body.append(f" else {{\n{failure}    }}\n" if failure else "\n")
    body.append("    end_call(&c, (long)hr);\n    return hr;\n")
    return (
        f"static {returns} STDMETHODCALLTYPE {interface}_{method}({signature})\n{{\n"
        + "".join(body)
        + "}\n"
    )


def guid_initializer(text: str) -> str:
    u = uuid.UUID(text)
    d4 = ", ".join(f"0x{b:02x}" for b in u.bytes[8:])
    return f"{{0x{u.fields[0]:08x}, 0x{u.fields[1]:04x}, 0x{u.fields[2]:04x}, {{{d4}}}}}"


PRELUDE = """/* Generated by ci/doubles/gen_com_double.py from providers/windows/_layouts.py.
   Do not edit. The COM double: vtables in win32metadata's slot order, every argument recorded,
   scripted answers (com_runtime.c). */
#include "com_runtime.h"
#include <string.h>

"""


def generate(lay: Any) -> tuple[str, str]:
    names = wanted_structs(lay)
    interfaces = list(lay.INTERFACES)
    out = [PRELUDE, struct_source(lay, names), "\n"]
    for ours, sdk in SDK_TWINS.items():
        if ours in names:
            out.append(
                f"_Static_assert(sizeof({c_name(ours)}) == sizeof({sdk}), "
                f'"the metadata and the SDK headers disagree on {ours}");\n'
            )
    out.append(
        "\n__declspec(dllexport) const char *WINAPI DoubleLayout(void)\n{\n"
        "    static char buf[65536];\n    int n = 0;\n"
        + layout_json(lay, names)
        + "\n    return buf;\n}\n\n"
    )
    out += [fill_source(lay, name) + "\n" for name in filled_structs(lay)]
    for interface in interfaces:
        for method in lay.INTERFACES[interface]["methods"]:
            out.append(method_source(lay, interface, method) + "\n")
    for interface in interfaces:
        entries = "".join(
            f"    (const void *){owner}_{method},\n" for owner, method in slots(lay, interface)
        )
        out.append(f"static const void *const vtbl_{interface}[] = {{\n{entries}}};\n")
    rows = []
    for interface in interfaces:
        base = lay.INTERFACES[interface]["base"]
        rows.append(
            f'    {{"{interface}", {guid_initializer(lay.INTERFACES[interface]["iid"])}, '
            f"{interfaces.index(base) if base else -1}, vtbl_{interface}}},\n"
        )
    out.append(
        "\nconst IfaceInfo IFACES[] = {\n" + "".join(rows) + "};\n"
        f"const int NIFACES = {len(interfaces)};\n"
    )
    exports = (
        f"LIBRARY {DLL}\nEXPORTS\n    DllGetClassObject PRIVATE\n"
        "    DllCanUnloadNow PRIVATE\n    DoubleLayout\n"
    )
    return "".join(out), exports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    lay = layouts()
    source, exports = generate(lay)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "comdouble.c").write_text(source, encoding="utf-8")
    (args.out / "comdouble.def").write_text(exports, encoding="utf-8")
    methods = sum(len(i["methods"]) for i in lay.INTERFACES.values())
    print(
        f"gen_com_double: {args.out}/comdouble.c, {len(lay.INTERFACES)} interfaces, "
        f"{methods} methods"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
