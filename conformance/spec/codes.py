"""Return codes: HRESULT and Win32-status arithmetic, the shared symbol table, code families.

Specs name codes by symbol; people read them as `SYMBOL (0x8004270A)`. The families in
`specs/codes.yaml` (HRESULT_FROM_WIN32, WIN32_ERROR, ...) give the value ranges that a
spec's `also` list admits without a table row.
"""

from __future__ import annotations

from dataclasses import dataclass

from conformance.spec.source import Document, SourceError

U32 = 0xFFFFFFFF


def failed(value: int) -> bool:
    """FAILED(hr): the severity bit is set."""
    return bool(value & 0x80000000)


def hex32(value: int) -> str:
    return f"0x{value & U32:08X}"


def is_microsoft_hresult_failure(value: int) -> bool:
    """An HRESULT failure defined by Microsoft: severity set, customer bit clear."""
    return failed(value) and not value & 0x20000000


def is_plain_win32(value: int) -> bool:
    """A bare Win32 error code (winerror.h), not wrapped in an HRESULT."""
    return 0 < value <= 0xFFFF


@dataclass(frozen=True)
class Family:
    """A range of values admitted as a group: by mask/value or by min/max."""

    name: str
    mask: int | None = None
    value: int | None = None
    min: int | None = None
    max: int | None = None

    def __contains__(self, code: int) -> bool:
        if self.mask is not None and self.value is not None:
            return code & self.mask == self.value
        lo = self.min if self.min is not None else 0
        hi = self.max if self.max is not None else U32
        return lo <= code <= hi


@dataclass(frozen=True)
class CodeTable:
    """Symbols and families shared by every spec (specs/codes.yaml)."""

    symbols: dict[str, int]
    families: dict[str, Family]

    def describe(self, value: int, known: dict[int, str] | None = None) -> str:
        """`SYMBOL (0x...)` where the value is known, else the bare hex."""
        name = (known or {}).get(value) or self._by_value().get(value)
        return f"{name} ({hex32(value)})" if name else hex32(value)

    def _by_value(self) -> dict[int, str]:
        return {v: k for k, v in reversed(self.symbols.items())}

    def admits(self, entry: str, value: int) -> bool:
        """Does an `also` entry (a symbol or a family) admit this value?"""
        if entry in self.families:
            return value in self.families[entry]
        return self.symbols.get(entry) == value


def code_table_from(doc: Document) -> CodeTable:
    data = doc.data if isinstance(doc.data, dict) else {}
    problems = []
    symbols = data.get("symbols") or {}
    families_raw = data.get("families") or {}
    if not isinstance(symbols, dict) or not all(isinstance(v, int) for v in symbols.values()):
        problems.append(doc.problem(("symbols",), "must map each symbol to an integer value"))
    families: dict[str, Family] = {}
    if isinstance(families_raw, dict):
        for name, spec in families_raw.items():
            if not isinstance(spec, dict) or not set(spec) <= {"mask", "value", "min", "max"}:
                problems.append(
                    doc.problem(("families", name), "a family is {mask, value} or {min, max}")
                )
                continue
            families[name] = Family(name, **spec)
    if problems:
        raise SourceError(problems)
    return CodeTable(dict(symbols), families)
