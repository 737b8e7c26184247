"""Cross-checks across specs, which no one spec can see: a symbol has one value everywhere and
a severity that matches its name, `HRESULT_FROM_WIN32(X)` is X's value wrapped, and a
multi-call scenario calls only methods loaded with it, in its family. A mismatch would make
one spec's verdicts contradict another's, so the catalog refuses it before any call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from conformance.spec.codes import CodeTable, failed, hex32
from conformance.spec.model import Spec
from conformance.spec.paths import specs_root_of
from conformance.spec.source import Document, Path_, Problem, SourceError, load_file

WIN32_WRAPPED = re.compile(r"^HRESULT_FROM_WIN32\(([A-Za-z_][A-Za-z0-9_]*)\)$")


@dataclass(frozen=True)
class _Seen:
    """Where a symbol's value is written; its line is looked up only for a message."""

    value: int
    file: str
    path: str
    doc: Document | None = None
    at: Path_ = ()

    @property
    def line(self) -> int:
        return self.doc.line(self.at) if self.doc is not None else 1


def _sequence_problems(specs: list[Spec]) -> list[Problem]:
    """A multi-call scenario may call another method only if its spec is loaded too, in the
    same family (so a run fails at exit 2, before any call, rather than mid-run)."""
    by_id = {s.id: s for s in specs}
    problems = []
    for spec in specs:
        for scenario in spec.scenarios:
            for j, entry in enumerate(scenario.calls):
                method = entry.get("method") if isinstance(entry, dict) else None
                if method is None or spec.document is None:
                    continue
                where = ("scenarios", scenario.index, "calls", j, "method")
                other = by_id.get(method)
                if other is None:
                    problems.append(
                        spec.document.problem(
                            where, f"unknown method {method!r}: its spec is not among those loaded"
                        )
                    )
                elif other.family != spec.family:
                    problems.append(
                        spec.document.problem(
                            where, f"{method!r} is in family {other.family}, not {spec.family}"
                        )
                    )
    return problems


def catalog_problems(specs: list[Spec], codes: CodeTable) -> list[Problem]:
    """Across files: one value per symbol, and symbols whose severity matches their value."""
    problems: list[Problem] = _sequence_problems(specs)
    table = _table_locations(specs, codes)
    first: dict[str, _Seen] = dict(table)
    for symbol, seen in table.items():
        message = _severity_problem(symbol, seen.value)
        if message:
            problems.append(Problem(seen.file, seen.line, seen.path, message))
    for spec in specs:
        for i, code in enumerate(spec.codes):
            path = f"returns.codes[{i}].value"
            here = _Seen(
                code.value, spec.file, path, spec.document, ("returns", "codes", i, "value")
            )
            earlier = first.setdefault(code.symbol, here)
            if earlier.value != code.value:
                problems.append(
                    Problem(
                        here.file,
                        here.line,
                        path,
                        f"{code.symbol} is {hex32(code.value)} here but "
                        f"{hex32(earlier.value)} in {earlier.file}:{earlier.line}",
                    )
                )
            message = _severity_problem(code.symbol, code.value)
            if message:
                problems.append(Problem(here.file, here.line, path, message))
    problems.extend(_wrapped_win32_problems(first))
    return problems


def _table_locations(specs: list[Spec], codes: CodeTable) -> dict[str, _Seen]:
    """Where each code-table symbol is written, for messages that name codes.yaml."""
    root = specs_root_of(specs[0].file) if specs else None
    file = str(root / "codes.yaml") if root else "codes.yaml"
    try:
        doc = load_file(file) if root else None
    except SourceError:
        doc = None
    return {
        symbol: _Seen(value, file, f"symbols.{symbol}", doc, ("symbols", symbol))
        for symbol, value in codes.symbols.items()
    }


def _severity_problem(symbol: str, value: int) -> str | None:
    """E_ names a failure (severity bit set), S_ a success (bit clear)."""
    if symbol.startswith("E_") or "_E_" in symbol:
        if not failed(value):
            return f"{symbol} names a failure but {hex32(value)} has the severity bit clear"
    elif (symbol.startswith("S_") or "_S_" in symbol) and failed(value):
        return f"{symbol} names a success but {hex32(value)} has the severity bit set"
    return None


def _wrapped_win32_problems(first: dict[str, _Seen]) -> list[Problem]:
    """HRESULT_FROM_WIN32(X) must be 0x8007xxxx of X wherever X's value is known."""
    out = []
    for symbol, seen in first.items():
        match = WIN32_WRAPPED.match(symbol)
        name = match.group(1) if match else ""
        inner = first.get(name)
        if inner is None:
            continue
        want = inner.value if inner.value == 0 else 0x80070000 | (inner.value & 0xFFFF)
        if seen.value != want:
            out.append(
                Problem(
                    seen.file,
                    seen.line,
                    seen.path,
                    f"{symbol} is {hex32(seen.value)} but {name} is "
                    f"{hex32(inner.value)}, so it must be {hex32(want)}",
                )
            )
    return out
