"""Check what the doubles recorded against the metadata's layouts.

    python ci/doubles/check_calls.py LOG LAYOUT.json   # exit 1 on any mismatch

LOG is the doubles' JSON lines ($DOUBLE_LOG: the iscsidsc.dll double's and the COM double's);
LAYOUT.json is what their DoubleLayout() returned, merged: every structure as the C compiler
(mingw-w64, the Win64 ABI) lays it out from the metadata. Each recorded iscsidsc call must name a
function of the metadata, carry exactly its parameters in order, and each argument must be what
its declared type allows: a number within its width, a structure of exactly the C size whose
text members are NUL-terminated inside their arrays, a string without a NUL. Each recorded COM
call must name a method of the interface it was called through (or of a base), in the
metadata's parameter order, with numbers within their widths, GUIDs of 16 bytes, out-pointers
that are not NULL (where the method allows no NULL), no Release below zero, and IDispatch as
the automation contract has it: riid IID_NULL, known flags, a DISPID the object gave out,
DISPPARAMS of the C size whose VARIANTs are automation types (VARIANT_BOOL 0 or -1, a BSTR
whose length prefix is its text's), and the one named DISPID_PROPERTYPUT exactly for a put.
`decode` turns a recorded structure back into its members, for tests that compare them with
what the backend meant to pass.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
WIDTHS = {
    "BYTE": 8,
    "CHAR": 8,
    "WCHAR": 16,
    "SHORT": 16,
    "USHORT": 16,
    "LONG": 32,
    "ULONG": 32,
    "LONGLONG": 64,
    "ULONGLONG": 64,
}


def layouts() -> Any:
    """providers/windows/_layouts.py, loaded by path (plain data; nothing else imported)."""
    path = ROOT / "providers" / "windows" / "_layouts.py"
    spec = importlib.util.spec_from_file_location("_layouts", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _size_of(text: str, c_layout: dict[str, Any]) -> int | None:
    """The byte size of a member type, from the C layout (structs) or the scalar widths."""
    if text.endswith("*") or text in ("PWSTR", "PSTR", "PVOID"):
        return 8
    if text.endswith("]"):
        element, count = text[:-1].split("[")
        size = _size_of(element, c_layout)
        return None if size is None or not count else size * int(count)
    if text in WIDTHS:
        return WIDTHS[text] // 8
    if text == "GUID":
        return 16
    return c_layout.get(text, {}).get("size")


def decode(name: str, data: bytes, lay: Any, c_layout: dict[str, Any]) -> dict[str, Any]:
    """A recorded structure as {member: value}: numbers, text (up to its NUL), nested dicts,
    raw bytes for anything else; members placed by the C compiler's offsets."""
    out: dict[str, Any] = {}
    offsets = c_layout[name]["offsets"]
    for field, text in lay.STRUCTS[name]["fields"]:
        start = offsets[field]
        size = _size_of(text, c_layout)
        raw = data[start:] if size is None else data[start : start + size]
        out[field] = _value(text, raw, lay, c_layout)
    return out


def _value(text: str, raw: bytes, lay: Any, c_layout: dict[str, Any]) -> Any:
    if text in WIDTHS:
        return int.from_bytes(raw, "little")
    if text in ("WCHAR[256]", "WCHAR[224]", "WCHAR[257]", "WCHAR[260]"):
        units = [raw[i : i + 2] for i in range(0, len(raw), 2)]
        end = units.index(b"\0\0") if b"\0\0" in units else -1
        return {"text": b"".join(units[:end]).decode("utf-16-le") if end >= 0 else None}
    if text.startswith("CHAR["):
        end = raw.find(b"\0")
        return {"text": raw[:end].decode("latin-1") if end >= 0 else None}
    if text in lay.STRUCTS:
        return decode(text, raw, lay, c_layout)
    if text.endswith("[]"):
        return raw
    return raw.hex()


def check_record(record: dict[str, Any], lay: Any, c_layout: dict[str, Any]) -> list[str]:
    """The problems of one recorded call (an empty list when every argument is as declared)."""
    if record.get("double") == "com":
        return check_com_record(record, lay, c_layout)
    fn = record["fn"]
    decl = lay.FUNCTIONS.get(fn)
    if decl is None:
        return [f"{fn}: not a function of the metadata"]
    names = [p for p, _ in decl["params"]]
    if list(record["args"]) != names:
        return [f"{fn}: parameters {list(record['args'])}, the metadata says {names}"]
    problems = []
    for param, text in decl["params"]:
        problem = _check_arg(text, record["args"][param], lay, c_layout)
        if problem:
            problems.append(f"{fn}({param}: {text}): {problem}")
    return problems


def _check_arg(text: str, value: Any, lay: Any, c_layout: dict[str, Any]) -> str | None:
    if value is None or value == "ptr":
        return (
            None if text.endswith("*") or text in ("PWSTR", "PSTR", "PVOID") else "NULL for a value"
        )
    if text in WIDTHS:
        ok = isinstance(value, int) and 0 <= value < (1 << 64)
        return (
            None
            if ok and value >> WIDTHS[text] in (0, (1 << (64 - WIDTHS[text])) - 1)
            else f"{value} does not fit {text}"
        )
    data = bytes.fromhex(value)
    if text == "PWSTR":
        return None if len(data) % 2 == 0 else "odd byte count for UTF-16"
    if text == "PSTR":
        return None
    base = text[:-1]
    if base in lay.STRUCTS:
        size = c_layout[base]["size"]
        if len(data) < size:
            return f"{len(data)} bytes, the C structure has {size}"
        return _unterminated(decode(base, data, lay, c_layout))
    if base in WIDTHS:
        return None if len(data) == WIDTHS[base] // 8 else f"{len(data)} bytes for a {base}"
    return None


def _unterminated(members: dict[str, Any], path: str = "") -> str | None:
    for field, value in members.items():
        if isinstance(value, dict) and "text" in value:
            if value["text"] is None:
                return f"{path}{field} has no NUL inside its array"
        elif isinstance(value, dict):
            found = _unterminated(value, f"{path}{field}.")
            if found:
                return found
    return None


# COM parameters a caller may pass as NULL: (interface, method, parameter).
COM_OPTIONAL = {
    ("IDispatch", "Invoke", "pVarResult"),
    ("IDispatch", "Invoke", "pExcepInfo"),
    ("IDispatch", "Invoke", "puArgErr"),
    ("IEnumVdsObject", "Next", "pcFetched"),
    ("IVdsServiceLoader", "LoadService", "pwszMachineName"),
}
VT_AUTOMATION = {0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 18, 19, 20, 21, 22, 23}
VT_BOOL, VT_BSTR = 11, 8
DISPATCH_FLAGS = {1, 2, 3, 4, 8}  # METHOD, PROPERTYGET (or both), PROPERTYPUT, PROPERTYPUTREF
DISPATCH_PROPERTYPUT, DISPID_PROPERTYPUT = 4, -3
IID_NULL = "00" * 16


def _bases(lay: Any, interface: str) -> list[str]:
    out = []
    while interface:
        out.append(interface)
        interface = lay.INTERFACES[interface]["base"]
    return out


def check_com_record(record: dict[str, Any], lay: Any, c_layout: dict[str, Any]) -> list[str]:
    """The problems of one call the COM double recorded."""
    fn = record["fn"]
    interface, _, method = fn.partition("::")
    decl = lay.INTERFACES.get(interface, {}).get("methods", {}).get(method)
    if decl is None:
        return [f"{fn}: not a method of the metadata"]
    if record["iface"] not in lay.INTERFACES or interface not in _bases(lay, record["iface"]):
        return [f"{fn}: called through an {record['iface']} pointer, which has no such slot"]
    names = [p for p, _ in decl["params"]]
    if list(record["args"]) != names:
        return [f"{fn}: parameters {list(record['args'])}, the metadata says {names}"]
    problems = []
    args = record["args"]
    for param, text in decl["params"]:
        value = args[param]
        if value is None:
            problem = (
                None
                if (interface, method, param) in COM_OPTIONAL
                else "NULL, which the method does not allow"
            )
        elif text == "GUID" or text == "GUID*":
            problem = None if len(bytes.fromhex(value)) == 16 else "not 16 bytes"
            if problem is None and method in ("Invoke", "GetIDsOfNames") and value != IID_NULL:
                problem = "riid is not IID_NULL"
        elif text == "DISPPARAMS*":
            problem = _check_dispparams(value, args.get("wFlags"), c_layout)
        elif text == "PWSTR*" and isinstance(value, list):
            problem = (
                None
                if len(value) == args.get("cNames")
                and all(v is not None and len(bytes.fromhex(v)) % 2 == 0 for v in value)
                else f"{len(value)} names for cNames {args.get('cNames')}"
            )
        else:
            problem = _check_arg(text, value, lay, c_layout)
        if problem:
            problems.append(f"{fn}({param}: {text}): {problem}")
    if method == "Invoke":
        if args["wFlags"] not in DISPATCH_FLAGS:
            problems.append(f"{fn}: wFlags {args['wFlags']} is no DISPATCH_ combination")
        if "member" not in record:
            problems.append(f"{fn}: DISPID {args['dispIdMember']} was never given out")
    if record.get("underflow"):
        problems.append(f"{fn} on {record['this']}: released more often than referenced")
    return problems


def _check_dispparams(value: Any, flags: Any, c_layout: dict[str, Any]) -> str | None:
    if not isinstance(value, dict):
        return "DISPPARAMS not recorded"
    layout = c_layout["DISPPARAMS"]
    data = bytes.fromhex(value["bytes"])
    if len(data) != layout["size"]:
        return f"{len(data)} bytes, the C structure has {layout['size']}"

    def field(name: str) -> int:
        start = layout["offsets"][name]
        return int.from_bytes(data[start : start + 4], "little")

    count, named = field("cArgs"), field("cNamedArgs")
    variants = value["args"] or []
    if len(variants) != count:
        return f"cArgs {count}, {len(variants)} VARIANTs readable"
    for i, arg in enumerate(variants):
        raw = bytes.fromhex(arg["variant"])
        if len(raw) != c_layout["VARIANT"]["size"]:
            return f"VARIANT {i}: {len(raw)} bytes"
        vt = int.from_bytes(raw[:2], "little")
        if vt not in VT_AUTOMATION:
            return f"VARIANT {i}: vt {vt} is not an automation type"
        if vt == VT_BOOL and raw[8:10] not in (b"\0\0", b"\xff\xff"):
            return f"VARIANT {i}: VARIANT_BOOL {raw[8:10].hex()} is neither 0 nor -1"
        text = bytes.fromhex(arg.get("bstr", ""))
        if vt == VT_BSTR and "bstr" in arg and arg["bstr_prefix"] != len(text):
            return f"VARIANT {i}: BSTR prefix {arg['bstr_prefix']} for {arg['bstr']!r}"
    ids = value["named"] or []
    if len(ids) != named:
        return f"cNamedArgs {named}, {len(ids)} DISPIDs readable"
    if flags == DISPATCH_PROPERTYPUT and (ids != [DISPID_PROPERTYPUT] or count != 1):
        return f"a property put passes named {ids} with {count} argument(s)"
    if flags != DISPATCH_PROPERTYPUT and ids:
        return f"named arguments {ids} outside a property put"
    return None


def check_log(log: Path, c_layout: dict[str, Any]) -> tuple[int, int, list[str]]:
    """(calls, arguments checked, problems) of a whole log."""
    lay = layouts()
    calls = args = 0
    problems: list[str] = []
    for line in log.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        calls += 1
        args += len(record["args"])
        problems += check_record(record, lay, c_layout)
    return calls, args, problems


def main(argv: list[str]) -> int:
    log, layout = Path(argv[0]), json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    calls, args, problems = check_log(log, layout)
    by_fn: dict[str, int] = {}
    per_double: dict[str, list[int]] = {"iscsidsc.dll": [0, 0], "COM": [0, 0]}
    for line in log.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        by_fn[record["fn"]] = by_fn.get(record["fn"], 0) + 1
        tally = per_double["COM" if record.get("double") == "com" else "iscsidsc.dll"]
        tally[0] += 1
        tally[1] += len(record["args"])
    shown = "; ".join(f"{name}: {n} calls, {a} arguments" for name, (n, a) in per_double.items())
    print(
        f"check_calls: {calls} calls through the doubles, {args} arguments checked against "
        f"the metadata layouts ({shown}), {len(problems)} mismatch(es)"
    )
    print("  " + ", ".join(f"{fn} x{n}" for fn, n in sorted(by_fn.items())))
    for problem in problems[:20]:
        print(f"  MISMATCH {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
