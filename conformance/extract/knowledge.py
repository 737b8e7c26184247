"""What is already known about codes and methods: the existing specs, codes.yaml, code lists.

Merging uses it to name what a page stripped and to fill values a table left out (S_OK has no
value cell in sdk-api tables); findings use it to catch a value that disagrees with its symbol.
Every answer carries where it came from, so each inference can be recorded in the spec.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from conformance.extract.page import Page

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def meaning(doc: str) -> str:
    """A description reduced to what compares: case, spacing and final stop dropped."""
    return re.sub(r"\s+", " ", doc).strip().rstrip(".").lower()


@dataclass
class ExistingSpec:
    file: Path
    data: dict[str, Any]

    @property
    def codes(self) -> list[dict[str, Any]]:
        returns = self.data.get("returns") or {}
        return [c for c in returns.get("codes") or [] if isinstance(c, dict)]


@dataclass
class Knowledge:
    """Symbols, values and meanings with their origins; specs by id, interface and header."""

    root: Path | None = None
    values: dict[str, tuple[int, str]] = field(default_factory=dict)
    meanings: dict[str, dict[str, str]] = field(default_factory=dict)  # meaning -> symbol -> where
    specs: dict[str, ExistingSpec] = field(default_factory=dict)
    families: set[str] = field(default_factory=set)
    constants: dict[str, tuple[int, str]] = field(default_factory=dict)
    batch_meanings: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    code_pages: list[Path] = field(default_factory=list)  # codes.yaml `x-code-pages`

    def value_of(self, symbol: str) -> tuple[int, str] | None:
        found = self.values.get(symbol)
        if found is None and symbol.startswith("HRESULT_FROM_WIN32("):
            inner = self.values.get(symbol[len("HRESULT_FROM_WIN32(") : -1])
            if inner is not None:
                value = inner[0] if inner[0] == 0 else 0x80070000 | (inner[0] & 0xFFFF)
                return value, f"HRESULT_FROM_WIN32 of {inner[1]}"
        return found

    def named_by_meaning(self, doc: str) -> dict[str, str]:
        """Symbols the existing specs document with this meaning (symbol -> where)."""
        return self.meanings.get(meaning(doc), {})

    def spec_like(self, page: Page) -> ExistingSpec | None:
        """The existing spec of this method, or one of its interface, or of its header."""
        if page.method in self.specs:
            return self.specs[page.method]
        for spec in self.specs.values():
            iface = (spec.data.get("interface") or {}).get("name")
            if page.interface and iface == page.interface:
                return spec
        header = (page.header or "").lower()
        for spec in self.specs.values():
            if header and str(spec.data.get("header", "")).lower() == header:
                return spec
        return None

    def learn_pages(self, pages: list[Page]) -> None:
        """Values and meanings the pages of this batch state (code lists included)."""
        for page in pages:
            for row in page.rows:
                if row.symbol and row.value is not None:
                    self.values.setdefault(row.symbol, (row.value, page.doc))
                if row.symbol and row.doc:
                    self.batch_meanings.setdefault(meaning(row.doc), {}).setdefault(
                        row.symbol, []
                    ).append(page.doc)


def load_knowledge(root: str | Path | None) -> Knowledge:
    """Read codes.yaml and every spec under a specs folder; unreadable files are skipped."""
    known = Knowledge(Path(root) if root else None)
    if root is None:
        return known
    root = Path(root)
    codes = _load(root / "codes.yaml")
    if isinstance(codes, dict):
        for symbol, value in (codes.get("symbols") or {}).items():
            if isinstance(value, int):
                known.values[str(symbol)] = (value, "codes.yaml")
        known.families = {str(f) for f in codes.get("families") or {}}
        known.code_pages = _code_pages(codes.get("x-code-pages"), root)
    for file in sorted(root.rglob("*.yaml")):
        if file.name == "codes.yaml" or "domains" in file.relative_to(root).parts:
            continue
        data = _load(file)
        if isinstance(data, dict) and isinstance(data.get("id"), str):
            _learn_spec(known, ExistingSpec(file, data), root)
    return known


def _code_pages(entry: Any, root: Path) -> list[Path]:
    """`x-code-pages: {family: path}` (or a list of paths), relative to codes.yaml."""
    paths = entry.values() if isinstance(entry, dict) else entry if isinstance(entry, list) else []
    return [root / str(p) for p in paths if isinstance(p, str)]


def _learn_spec(known: Knowledge, spec: ExistingSpec, root: Path) -> None:
    known.specs.setdefault(spec.data["id"], spec)
    where = str(spec.file.relative_to(root))
    for code in spec.codes:
        symbol, value = code.get("symbol"), code.get("value")
        if isinstance(symbol, str) and isinstance(value, int):
            known.values.setdefault(symbol, (value, where))
        if isinstance(symbol, str) and isinstance(code.get("doc"), str):
            known.meanings.setdefault(meaning(code["doc"]), {}).setdefault(symbol, where)
    for name, value in (spec.data.get("constants") or {}).items():
        if isinstance(value, int):
            known.constants.setdefault(str(name), (value, where))


def _load(file: Path) -> Any:
    try:
        return yaml.load(file.read_text(encoding="utf-8"), Loader=_LOADER)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
