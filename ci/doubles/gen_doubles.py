"""Generate the C source of the iscsidsc.dll test double from the backend's metadata layouts.

    python ci/doubles/gen_doubles.py --out DIR    # writes DIR/iscsidsc.c and DIR/iscsidsc.def

The double exports every iscsidsc function in providers/windows/_layouts.py with the exact
signature the metadata gives (so the Win64 calling convention is the compiler's, not ours), and
every structure those functions take, declared in C from the same layouts (so sizes and offsets
are the C compiler's). Each call appends one JSON line to the file $DOUBLE_LOG: the function, and
each argument as it arrived (numbers, strings as hex bytes, structures byte for byte). What it
returns is scripted by $DOUBLE_SCRIPT (`Name=status` lines; `initiators=` and `targets=` lists
separated by `;`). `DoubleLayout()` returns the C layout of every structure as JSON, which
check_calls.py holds against the ctypes layouts. The double only serves tests of the backend's
marshalling; it is never a conformance target.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from check_calls import layouts  # the one loader of the layouts, beside this script

ROOT = Path(__file__).resolve().parents[2]
DLL = "iscsidsc.dll"
SCALARS = {
    "BYTE": "uint8_t",
    "CHAR": "char",
    "WCHAR": "uint16_t",
    "SHORT": "int16_t",
    "USHORT": "uint16_t",
    "LONG": "int32_t",
    "ULONG": "uint32_t",
    "LONGLONG": "int64_t",
    "ULONGLONG": "uint64_t",
    "FLOAT": "float",
    "DOUBLE": "double",
    "PWSTR": "uint16_t*",
    "PSTR": "char*",
    "PVOID": "void*",
    "LONG_PTR": "intptr_t",
    "ULONG_PTR": "uintptr_t",
    "GUID": "GUID",
    "VOID": "void",
}
# (function, parameter) written by the callee: recorded only as NULL or not.
OUT_PARAMS = {
    ("ReportIScsiPersistentLoginsA", "PersistentLoginInfo"),
    ("ReportIScsiPersistentLoginsW", "PersistentLoginInfo"),
    ("ReportIScsiPersistentLoginsA", "Count"),
    ("ReportIScsiPersistentLoginsW", "Count"),
    ("GetIScsiSessionListW", "SessionInfo"),
    ("GetIScsiSessionListW", "SessionCount"),
    ("LoginIScsiTargetA", "UniqueSessionId"),
    ("LoginIScsiTargetW", "UniqueSessionId"),
    ("LoginIScsiTargetA", "UniqueConnectionId"),
    ("LoginIScsiTargetW", "UniqueConnectionId"),
    ("ReportIScsiInitiatorListW", "Buffer"),
    ("ReportIScsiTargetsW", "Buffer"),
}


def c_name(struct: str) -> str:
    return "D_" + struct.replace(".", "_")


def c_type(text: str, structs: dict[str, Any]) -> str:
    if text.endswith("*"):
        inner = text[:-1]
        known = inner in SCALARS or inner in structs or inner.endswith("*")
        return ("void" if inner == "VOID" or not known else c_type(inner, structs)) + "*"
    if text in SCALARS:
        return SCALARS[text]
    if text in structs:
        return c_name(text)
    raise SystemExit(f"gen_doubles: no C type for {text!r}")


def declaration(name: str, text: str, structs: dict[str, Any]) -> str:
    """`type name[N]` for a member (arrays keep their length; `T[]` is a flexible member)."""
    if text.endswith("]"):
        element, count = text[:-1].split("[")
        return f"{c_type(element, structs)} {name}[{count}]"
    return f"{c_type(text, structs)} {name}"


def wanted_structs(lay: Any) -> list[str]:
    """The structs the iscsidsc functions take, and what they hold by value, in C order."""
    order: list[str] = []

    pointed: list[str] = []

    def visit(text: str) -> None:
        base = text.rstrip("*").split("[")[0]
        if base in lay.STRUCTS and base not in order:
            for _, member in lay.STRUCTS[base]["fields"]:
                (pointed.append if member.endswith("*") else visit)(member)
            order.append(base)

    for decl in functions(lay).values():
        for _, text in decl["params"]:
            visit(text)
    while pointed:  # structures reached through a member pointer, defined after
        visit(pointed.pop(0))
    return order


def functions(lay: Any) -> dict[str, Any]:
    return {n: d for n, d in lay.FUNCTIONS.items() if d["dll"].lower() == DLL}


def struct_source(lay: Any, names: list[str]) -> str:
    """Every struct declared first (members may point at a later one), then defined."""
    out = [f"typedef {lay.STRUCTS[n]['kind']} {c_name(n)} {c_name(n)};\n" for n in names]
    for name in names:
        layout = lay.STRUCTS[name]
        members = "".join(f"    {declaration(f, t, lay.STRUCTS)};\n" for f, t in layout["fields"])
        out.append(f"\n{layout['kind']} {c_name(name)} {{\n{members}}};\n")
    return "".join(out)


def layout_json(lay: Any, names: list[str]) -> str:
    """C code building the JSON of every struct's size and member offsets."""
    lines = ['    n += snprintf(buf + n, sizeof buf - n, "{");']
    for i, name in enumerate(names):
        sep = "," if i else ""
        lines.append(
            f'    n += snprintf(buf + n, sizeof buf - n, "{sep}\\"{name}\\":'
            f'{{\\"size\\":%u,\\"offsets\\":{{", (unsigned)sizeof({c_name(name)}));'
        )
        for j, (field, _) in enumerate(lay.STRUCTS[name]["fields"]):
            comma = "," if j else ""
            lines.append(
                f'    n += snprintf(buf + n, sizeof buf - n, "{comma}\\"{field}\\":%u", '
                f"(unsigned)offsetof({c_name(name)}, {field}));"
            )
        lines.append('    n += snprintf(buf + n, sizeof buf - n, "}}");')
    lines.append('    n += snprintf(buf + n, sizeof buf - n, "}");')
    return "\n".join(lines)


def record_arg(fn: str, name: str, text: str, lay: Any) -> str:
    """C statements appending one argument to the log line."""
    key = f'    put_key(f, "{name}");\n'
    if (fn, name) in OUT_PARAMS:
        return key + f"    put_ptr(f, (const void*){name});\n"
    if text == "PWSTR":
        return key + f"    put_wstr(f, {name});\n"
    if text == "PSTR":
        return key + f"    put_str(f, {name});\n"
    if text.endswith("*"):
        base = text[:-1]
        if base in lay.STRUCTS:
            size = f"sizeof({c_name(base)})"
            flexible = [f for f, t in lay.STRUCTS[base]["fields"] if t.endswith("[]")]
            if flexible:  # Count elements follow the header
                element = lay.STRUCTS[base]["fields"][-1][1][:-2]
                size = (
                    f"({name} ? sizeof({c_name(base)}) + {name}->Count * "
                    f"sizeof({c_type(element, lay.STRUCTS)}) : 0)"
                )
            return key + f"    put_bytes(f, {name}, {size});\n"
        if base in SCALARS and base not in ("VOID",):
            return key + f"    put_bytes(f, {name}, sizeof(*{name}));\n"
        return key + f"    put_ptr(f, (const void*){name});\n"
    return key + f"    put_num(f, (unsigned long long)(uint64_t){name});\n"


BEHAVIOUR = {
    # The size dance of a REG_MULTI_SZ report; the list comes from the script.
    "ReportIScsiInitiatorListW": '    if (!status) status = multi_sz("initiators", BufferSize, '
    "Buffer);\n",
    "ReportIScsiTargetsW": '    if (!status) status = multi_sz("targets", BufferSize, Buffer);\n',
    "ReportIScsiPersistentLoginsW": "    if (!status && Count) *Count = 0;\n",
    "ReportIScsiPersistentLoginsA": "    if (!status && Count) *Count = 0;\n",
    "GetIScsiSessionListW": "    if (!status && SessionCount) *SessionCount = 0;\n",
    "LoginIScsiTargetW": "    if (!status && UniqueSessionId) { UniqueSessionId->AdapterUnique = "
    "0x1000; UniqueSessionId->AdapterSpecific = ++serial; }\n",
    "LoginIScsiTargetA": "    if (!status && UniqueSessionId) { UniqueSessionId->AdapterUnique = "
    "0x1000; UniqueSessionId->AdapterSpecific = ++serial; }\n",
}


def function_source(name: str, decl: dict[str, Any], lay: Any) -> str:
    params = ", ".join(declaration(p, t, lay.STRUCTS) for p, t in decl["params"]) or "void"
    returns = c_type(decl["returns"], lay.STRUCTS)
    body = "".join(record_arg(name, p, t, lay) for p, t in decl["params"])
    return (
        f"__declspec(dllexport) {returns} WINAPI {name}({params})\n{{\n"
        f'    FILE *f = begin("{name}");\n{body}'
        f'    uint32_t status = scripted("{name}");\n'
        f"{BEHAVIOUR.get(name, '')}"
        f"    end(f, status);\n    return status;\n}}\n"
    )


PRELUDE = r"""/* Generated by ci/doubles/gen_doubles.py from providers/windows/_layouts.py.
   Do not edit. A test double of iscsidsc.dll: records every argument, returns scripted results. */
#include <windows.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t serial;

/* The process's environment as Win32 keeps it (the caller's os.environ writes there; a CRT's
   getenv keeps its own copy from startup). */
static const char *env(const char *name)
{
    static char value[1024];
    DWORD n = GetEnvironmentVariableA(name, value, sizeof value);
    return n && n < sizeof value ? value : NULL;
}

static FILE *begin(const char *fn)
{
    const char *path = env("DOUBLE_LOG");
    FILE *f = path ? fopen(path, "ab") : NULL;
    if (f) fprintf(f, "{\"fn\":\"%s\",\"args\":{", fn);
    return f;
}

static int first_arg;

static void put_key(FILE *f, const char *name)
{
    if (!f) return;
    fprintf(f, "%s\"%s\":", first_arg ? "," : "", name);
    first_arg = 1;
}

static void put_hex(FILE *f, const void *data, size_t size)
{
    const unsigned char *p = data;
    fputc('"', f);
    for (size_t i = 0; i < size; i++) fprintf(f, "%02x", p[i]);
    fputc('"', f);
}

static void put_num(FILE *f, unsigned long long v) { if (f) fprintf(f, "%llu", v); }

static void put_ptr(FILE *f, const void *p) { if (f) fputs(p ? "\"ptr\"" : "null", f); }

static void put_bytes(FILE *f, const void *p, size_t size)
{
    if (!f) return;
    if (!p) { fputs("null", f); return; }
    put_hex(f, p, size);
}

static void put_wstr(FILE *f, const uint16_t *s)
{
    size_t n = 0;
    if (!f) return;
    if (!s) { fputs("null", f); return; }
    while (s[n]) n++;
    put_hex(f, s, 2 * n);
}

static void put_str(FILE *f, const char *s)
{
    if (!f) return;
    if (!s) { fputs("null", f); return; }
    put_hex(f, s, strlen(s));
}

static void end(FILE *f, uint32_t status)
{
    first_arg = 0;
    if (!f) return;
    fprintf(f, "},\"returned\":%u}\n", status);
    fclose(f);
}

/* The script's value for a key (`key=value` lines), or NULL. */
static const char *script(const char *key, char *out, size_t size)
{
    char path[1024];
    char line[4096];
    size_t k = strlen(key);
    const char *where = env("DOUBLE_SCRIPT");
    FILE *f = where ? fopen(strcpy(path, where), "rb") : NULL;
    const char *found = NULL;
    if (!f) return NULL;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, key, k) && line[k] == '=') {
            line[strcspn(line, "\r\n")] = 0;
            snprintf(out, size, "%s", line + k + 1);
            found = out;
            break;
        }
    }
    fclose(f);
    return found;
}

static uint32_t scripted(const char *fn)
{
    char value[64];
    return script(fn, value, sizeof value) ? (uint32_t)strtoul(value, NULL, 0) : 0;
}

/* A REG_MULTI_SZ of the script's `;`-separated list, with ERROR_INSUFFICIENT_BUFFER sizing. */
static uint32_t multi_sz(const char *key, uint32_t *size, uint16_t *buffer)
{
    char list[4096] = "";
    size_t n = 0, need;
    script(key, list, sizeof list);
    need = strlen(list) + 2;
    if (!size) return ERROR_INVALID_PARAMETER;
    if (!buffer || *size < need) { *size = (uint32_t)need; return ERROR_INSUFFICIENT_BUFFER; }
    for (const char *p = list; *p; p++) buffer[n++] = (*p == ';') ? 0 : (unsigned char)*p;
    buffer[n++] = 0;
    buffer[n++] = 0;
    *size = (uint32_t)n;
    return 0;
}

"""


def generate(lay: Any) -> tuple[str, str]:
    names = wanted_structs(lay)
    funcs = functions(lay)
    source = [
        PRELUDE,
        struct_source(lay, names),
        "\n",
        "__declspec(dllexport) const char *WINAPI DoubleLayout(void)\n{\n"
        "    static char buf[65536];\n    int n = 0;\n",
        layout_json(lay, names),
        "\n    return buf;\n}\n\n",
    ]
    source += [function_source(n, d, lay) + "\n" for n, d in funcs.items()]
    exports = "LIBRARY iscsidsc.dll\nEXPORTS\n" + "".join(
        f"    {n}\n" for n in [*funcs, "DoubleLayout"]
    )
    return "".join(source), exports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    source, exports = generate(layouts())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "iscsidsc.c").write_text(source, encoding="utf-8")
    (args.out / "iscsidsc.def").write_text(exports, encoding="utf-8")
    print(f"gen_doubles: {args.out}/iscsidsc.c, {len(functions(layouts()))} functions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
