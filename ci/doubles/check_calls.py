"""Check what the iscsidsc.dll double recorded against the metadata's layouts.

    python ci/doubles/check_calls.py LOG LAYOUT.json   # exit 1 on any mismatch

LOG is the double's JSON lines ($DOUBLE_LOG); LAYOUT.json is what its DoubleLayout() returned:
every structure as the C compiler (mingw-w64, the Win64 ABI) lays it out from the metadata. Each
recorded call must name a function of the metadata, carry exactly its parameters in order, and
each argument must be what its declared type allows: a number within its width, a structure of
exactly the C size whose text members are NUL-terminated inside their arrays, a string without
a NUL. `decode` turns a recorded structure back into its members, for tests that compare them
with what the backend meant to pass.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
WIDTHS = {"BYTE": 8, "CHAR": 8, "WCHAR": 16, "SHORT": 16, "USHORT": 16, "LONG": 32,
          "ULONG": 32, "LONGLONG": 64, "ULONGLONG": 64}


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
        raw = data[start:] if size is None else data[start:start + size]
        out[field] = _value(text, raw, lay, c_layout)
    return out


def _value(text: str, raw: bytes, lay: Any, c_layout: dict[str, Any]) -> Any:
    if text in WIDTHS:
        return int.from_bytes(raw, "little")
    if text in ("WCHAR[256]", "WCHAR[224]", "WCHAR[257]", "WCHAR[260]"):
        units = [raw[i:i + 2] for i in range(0, len(raw), 2)]
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
        return None if text.endswith("*") or text in ("PWSTR", "PSTR") else "NULL for a value"
    if text in WIDTHS:
        ok = isinstance(value, int) and 0 <= value < (1 << 64)
        return None if ok and value >> WIDTHS[text] in (0, (1 << (64 - WIDTHS[text])) - 1) \
            else f"{value} does not fit {text}"
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
    for line in log.read_text(encoding="utf-8").splitlines():
        fn = json.loads(line)["fn"]
        by_fn[fn] = by_fn.get(fn, 0) + 1
    print(f"check_calls: {calls} calls through the double, {args} arguments checked against "
          f"the metadata layouts, {len(problems)} mismatch(es)")
    print("  " + ", ".join(f"{fn} x{n}" for fn, n in sorted(by_fn.items())))
    for problem in problems[:20]:
        print(f"  MISMATCH {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
