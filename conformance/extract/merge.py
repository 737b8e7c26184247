"""Pages of one method, merged into one spec draft in the stable `spec: 1` format.

The English source page leads (sdk-api, then win32, then rendered); other pages fill what it
lacks and are recorded in `sources[].fields`. Table rows are aligned by symbol, then value, then
order. A symbol a page stripped is named from another page of the same method or, failing
that, from the codes the existing specs document with the same meaning; each such inference is
written to the code's `x-inferred`, and what stays unnamed is left null and reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from conformance.extract import findings as F
from conformance.extract.knowledge import Knowledge, meaning
from conformance.extract.page import RENDERED, SDK_API, WIN32_MD, Page, ParamDoc, Row
from conformance.extract.resolve import Resolver

_FORMAT_RANK = {SDK_API: 0, WIN32_MD: 1, RENDERED: 2}
# Where a code was found, when not in the Return value section's table or list: a person
# confirms these (`x-confirm`), since prose and other sections are read by rule, not by layout.
_PLACES = {
    "prose": "Return value text",
    "remarks": "Remarks",
    "parameters": "Parameters",
    "description": "description",
}
_REQUIREMENT_ORDER = (
    "client",
    "server",
    "end_of_client_support",
    "end_of_server_support",
    "platform",
    "product",
    "header",
    "library",
    "dll",
    "redistributable",
)


@dataclass
class ExtractedSpec:
    """One method's draft spec, what it was made from, and what a person should look at."""

    id: str
    data: dict[str, Any]
    pages: list[Page]
    findings: list[F.Finding] = field(default_factory=list)
    inferences: list[str] = field(default_factory=list)
    unnamed: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    path: str | None = None
    confirm: list[str] = field(default_factory=list)  # codes named only in prose or elsewhere


@dataclass
class _Merge:
    pages: list[Page]
    known: Knowledge
    resolver: Resolver
    fields: dict[str, list[str]] = field(default_factory=dict)  # doc -> spec fields it gave
    findings: list[F.Finding] = field(default_factory=list)
    inferences: list[str] = field(default_factory=list)
    unnamed: list[str] = field(default_factory=list)

    @property
    def lead(self) -> Page:
        return self.pages[0]

    def took(self, page: Page, name: str) -> None:
        if page is not self.lead and name not in self.fields.setdefault(page.doc, []):
            self.fields[page.doc].append(name)

    def first(self, attr: str, english: bool = True) -> tuple[Any, Page | None]:
        """The first page (English first) that states `attr`."""
        for page in self.pages:
            value = getattr(page, attr)
            if value and (page.lang == "en" or not english):
                return value, page
        if english:
            return self.first(attr, english=False)
        return None, None


def merge(pages: list[Page], known: Knowledge, resolver: Resolver | None = None) -> ExtractedSpec:
    """One spec from every page of one method; values resolved by `resolver` (see resolve)."""
    pages = sorted(
        pages,
        key=lambda p: (
            p.lang != "en",
            _FORMAT_RANK.get(p.format, 9),
            not any(r.symbol for r in p.rows),
        ),
    )
    m = _Merge(pages, known, resolver or Resolver(known))
    rows = _rows(m)
    params = _params(m)
    data = _document(m, rows, params)
    _check(m, rows, params, data)
    sources = [_source(p, m.fields.get(p.doc)) for p in pages]
    data["sources"] = sources
    data["findings"] = [f.as_dict() for f in m.findings]
    confirm = [
        f"{r.symbol}: named only in the {_PLACES[r.found]}; confirm the method returns it"
        for r in rows
        if r.symbol and r.found in _PLACES
    ]
    return ExtractedSpec(
        m.lead.method, data, pages, m.findings, m.inferences, m.unnamed, confirm=confirm
    )


# --------------------------------------------------------------------------- rows


def _rows(m: _Merge) -> list[Row]:
    base = m.lead
    rows = [_copy(r) for r in base.rows]
    origin: dict[int, str] = {}
    for other in m.pages[1:]:
        pairs = align(
            [r for r in rows if r.origin == "table"], [r for r in other.rows if r.origin == "table"]
        )
        _fill(m, rows, other, pairs)
        if other.lang != base.lang:
            m.findings.extend(F.localized(base, other, pairs))
        for row in other.rows:
            if row.origin != "table" and row.symbol and all(r.symbol != row.symbol for r in rows):
                rows.append(_copy(row))
                origin[len(rows) - 1] = other.doc
                m.took(other, "returns.codes")
    for i, row in enumerate(rows):
        _name(m, row, i)
        if i in origin:
            row.origin = f"{row.origin}:{origin[i]}"
    rows = [r for r in rows if not _misspelled(m, r)]
    for row in rows:
        _value(m, row)
    return rows


def _misspelled(m: _Merge, row: Row) -> bool:
    """A symbol no source knows, spelled like one that exists: a finding, not a code."""
    own = frozenset(p.doc for p in m.pages)
    right = m.resolver.misspelled(row.symbol, own) if row.symbol else None
    if right is None:
        return False
    m.findings.append(F.unknown_symbol(row.symbol or "", right, row.value, m.resolver, m.lead.doc))
    return True


def _copy(row: Row) -> Row:
    return replace(row, notes=list(row.notes))


def align(mine: list[Row], theirs: list[Row]) -> dict[int, int]:
    """Index pairs (mine -> theirs): by symbol, then by value, else by order."""
    pairs: dict[int, int] = {}
    by_symbol = {r.symbol: j for j, r in enumerate(theirs) if r.symbol}
    by_value = {r.value: j for j, r in enumerate(theirs) if r.value is not None}
    for i, row in enumerate(mine):
        if row.symbol and row.symbol in by_symbol:
            pairs[i] = by_symbol[row.symbol]
        elif row.value is not None and row.value in by_value:
            pairs[i] = by_value[row.value]
    if pairs:
        return pairs
    return {i: i for i in range(min(len(mine), len(theirs)))}


def _fill(m: _Merge, rows: list[Row], other: Page, pairs: dict[int, int]) -> None:
    table = [r for r in rows if r.origin == "table"]
    theirs = [r for r in other.rows if r.origin == "table"]
    for i, j in pairs.items():
        mine, their = table[i], theirs[j]
        if mine.symbol is None and their.symbol:
            mine.symbol = their.symbol
            m.took(other, "returns.codes.symbol")
        elif mine.symbol and their.symbol and mine.symbol != their.symbol:
            m.findings.append(F.disagreement(mine.symbol, their.symbol, m.lead, other))
        if mine.value is None and their.value is not None:
            mine.value, mine.value_from = their.value, f"printed ({other.doc})"
            m.took(other, "returns.codes.value")
        if not mine.doc and their.doc and other.lang == "en":
            mine.doc = their.doc
            m.took(other, "returns.codes.doc")


def _name(m: _Merge, row: Row, index: int) -> None:
    """Name a stripped row from the existing spec of this method, else by meaning."""
    if row.symbol is not None:
        return
    same = m.known.specs.get(m.lead.method)
    if same is not None:
        codes = same.codes
        table_rows = [r for r in m.lead.rows if r.origin == "table"]
        by_order = codes[index] if index < len(codes) and len(codes) >= len(table_rows) else None
        if by_order and (
            m.lead.lang != "en" or meaning(by_order.get("doc", "")) == meaning(row.doc)
        ):
            row.symbol = by_order.get("symbol")
            _infer(
                m,
                row,
                f"symbol from row {index + 1} of the existing spec "
                f"{same.file.name}" + (" (by order)" if m.lead.lang != "en" else ""),
            )
            return
    candidates = m.known.named_by_meaning(row.doc) if m.lead.lang == "en" else {}
    if len(candidates) == 1:
        symbol, where = next(iter(candidates.items()))
        row.symbol = symbol
        _infer(m, row, f"symbol by meaning: {where} documents {symbol} as {row.doc!r}")
    else:
        why = (
            f"candidates {', '.join(sorted(candidates))}"
            if candidates
            else "no page or existing spec names it"
        )
        m.unnamed.append(f"row {index + 1} ({row.doc[:60]!r}): symbol unknown, {why}")


def _value(m: _Merge, row: Row) -> None:
    """Printed on the page, else the first source that knows it (resolve), else a finding."""
    if row.symbol is None:
        return
    if row.value is not None:
        row.value_from = row.value_from or "printed"
        return
    found = m.resolver.value(row.symbol)
    if found is None:
        m.unnamed.append(
            f"{row.symbol}: value unknown (no page, win32metadata, codes.yaml, "
            "existing spec or code page gives it)"
        )
        m.findings.append(F.value_unknown(row.symbol, m.lead.doc))
        return
    row.value, row.value_from = found
    m.inferences.append(f"value of {row.symbol} from {found[1]}")


def _infer(m: _Merge, row: Row, note: str) -> None:
    row.notes.append(note)
    m.inferences.append(note)


# --------------------------------------------------------------------------- params


def _params(m: _Merge) -> list[ParamDoc]:
    """Names, order and types from a syntax block when a page has one; prose from English."""
    typed = next((p for p in m.pages if p.signature), None)
    base = typed or m.lead
    params = [replace(p, special=list(p.special)) for p in base.params]
    if typed is not None and typed is not m.lead:
        m.took(typed, "params.type")
    english = [p for p in m.pages if p.lang == "en"]
    for param in params:
        for page in english:
            same = next((q for q in page.params if q.name == param.name), None)
            if same is None:
                continue
            param.doc = param.doc if (base.lang == "en" and param.doc) else same.doc
            param.direction = param.direction or same.direction
            param.optional = param.optional or same.optional
            param.nullable = param.nullable or same.nullable
            param.retval = param.retval or same.retval
            param.is_async = param.is_async or same.is_async
            param.special = param.special or same.special
            param.type = param.type or same.type
    _types(m, params)
    names = [p.name for p in params]
    for page in m.pages:
        theirs = [p.name for p in page.params]
        if theirs and theirs != names:
            m.findings.append(
                F.Finding(
                    "parameters-disagree-between-sources",
                    (f"{page.doc} lists parameters {theirs}, {base.doc} lists {names}."),
                    None,
                    page.doc,
                )
            )
    return params


def _types(m: _Merge, params: list[ParamDoc]) -> None:
    existing = m.known.specs.get(m.lead.method)
    old = {p.get("name"): p for p in (existing.data.get("params") or [])} if existing else {}
    source = existing.file.name if existing else ""  # (old is empty without it)
    for param in params:
        if any(page.signature for page in m.pages):
            continue
        previous = old.get(param.name, {}).get("type")
        if previous:
            param.type = previous
            m.inferences.append(f"type of {param.name} from the existing spec {source}")
        elif param.type:
            m.inferences.append(f"type of {param.name} ({param.type}) read from its prose")
        else:
            m.unnamed.append(
                f"parameter {param.name}: type unknown (no Syntax block, no existing spec)"
            )


# --------------------------------------------------------------------------- the document


def _document(m: _Merge, rows: list[Row], params: list[ParamDoc]) -> dict[str, Any]:
    lead = m.lead
    family, obj = _family_and_object(m)
    data: dict[str, Any] = {"spec": 1, "id": lead.method, "family": family, "kind": lead.kind}
    summary, page = m.first("summary")
    if summary:
        data["summary"] = summary
        _took(m, page, "summary")
    deprecated, page = m.first("deprecated")
    if deprecated:
        data["deprecated"] = deprecated
        _took(m, page, "deprecated")
    if lead.kind == "com-method":
        data["interface"] = _interface(m, obj)
    for attr in ("header", "dll", "charset", "twin"):
        value, page = m.first(attr)
        if value:
            data[attr] = value
            _took(m, page, attr)
    requirements = _requirements(m)
    if requirements:
        data["requirements"] = requirements
    constants = _constants(m, params)
    if constants:
        data["constants"] = constants
    data["params"] = [_param(p, constants) for p in params]
    data["returns"] = _returns(m, rows)
    data["rules"] = []
    data["scenarios"] = []
    return data


def _took(m: _Merge, page: Page | None, name: str) -> None:
    if page is not None:
        m.took(page, name)


def _family_and_object(m: _Merge) -> tuple[str, str | None]:
    like = m.known.spec_like(m.lead)
    iface = m.lead.interface
    if like is not None:
        family = str(like.data.get("family"))
        obj = (like.data.get("interface") or {}).get("object")
        same_iface = (like.data.get("interface") or {}).get("name") == iface
        if like.data.get("id") != m.lead.method:
            m.inferences.append(f"family {family} from {like.file.name}")
        if iface and same_iface and obj:
            return family, obj
        return family, _guess_object(m, iface) if iface else None
    header = (m.lead.header or m.first("header")[0] or "unknown.h").lower()
    family = re.sub(r"[^a-z0-9-]+", "-", header.rsplit(".", 1)[0]).strip("-") or "unknown"
    m.unnamed.append(
        f"family: no existing spec shares this interface or header; "
        f"'{family}' was made from the header: check it names a domain"
    )
    return family, _guess_object(m, iface) if iface else None


def _guess_object(m: _Merge, iface: str) -> str:
    name = re.sub(r"^I(?=[A-Z])", "", iface)
    obj = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
    m.unnamed.append(
        f"interface.object: no existing spec of {iface}; '{obj}' was made from "
        "its name: check it is a step of the family's domain"
    )
    return obj


def _interface(m: _Merge, obj: str | None) -> dict[str, Any]:
    iface = {"name": m.lead.interface, "object": obj}
    iid, page = m.first("iid")
    existing = m.known.specs.get(m.lead.method)
    old = (existing.data.get("interface") or {}) if existing else {}
    source = existing.file.name if existing else ""  # (old is empty without it)
    if iid:
        iface["iid"] = iid
        _took(m, page, "interface.iid")
    elif old.get("iid"):
        iface["iid"] = old["iid"]
        m.inferences.append(f"interface.iid from {source}")
    if isinstance(old.get("slot"), int):
        iface["slot"] = old["slot"]
        m.inferences.append(f"interface.slot from {source} (pages do not give it)")
    return iface


def _requirements(m: _Merge) -> dict[str, str]:
    out: dict[str, str] = {}
    for page in sorted(m.pages, key=lambda p: p.lang != "en"):
        added = [k for k in page.requirements if k not in out]
        for key in added:
            out[key] = page.requirements[key]
        if added:
            m.took(page, "requirements")
    return {
        k: out[k]
        for k in sorted(
            out, key=lambda k: (_REQUIREMENT_ORDER.index(k) if k in _REQUIREMENT_ORDER else 99, k)
        )
    }


def _constants(m: _Merge, params: list[ParamDoc]) -> dict[str, int]:
    out = {}
    for name in dict.fromkeys(s for p in params for s in p.special):
        found = m.known.constants.get(name)
        if found is None:
            m.unnamed.append(f"constant {name}: value unknown (named as a special value)")
            continue
        out[name] = found[0]
        m.inferences.append(f"constant {name} from {found[1]}")
    return out


def _param(param: ParamDoc, constants: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": param.name}
    if param.direction:
        out["direction"] = param.direction
    if param.retval:
        out["retval"] = True
    out["type"] = param.type
    for flag, on in (
        ("optional", param.optional),
        ("nullable", param.nullable),
        ("async", param.is_async),
    ):
        if on:
            out[flag] = True
    special = [s for s in param.special if s in constants]
    if special:
        out["special"] = special
    if param.doc:
        out["doc"] = param.doc
    return out


def _returns(m: _Merge, rows: list[Row]) -> dict[str, Any]:
    convention, _ = m.first("convention")
    delivery, _ = m.first("delivery")
    delivery = delivery or "direct"
    codes = [_code(m, r, delivery) for r in rows]
    if not codes:
        m.findings.append(F.no_codes(m.lead))
    also: list[str] = []
    for page in m.pages:
        if page.lang == "en" or not also:
            also.extend(a for a in page.also if a not in also)
    return {
        "convention": convention or "hresult",
        "delivery": delivery,
        "codes": codes,
        "also": also,
    }


def _code(m: _Merge, row: Row, delivery: str) -> dict[str, Any]:
    out: dict[str, Any] = {"symbol": row.symbol, "value": row.value, "doc": row.doc}
    via = row.via
    if via is None and delivery != "direct" and row.symbol == "E_POINTER":
        via = "call"
        m.inferences.append(
            "E_POINTER arrives by the call: with a NULL out-pointer there is "
            "no async object to complete"
        )
    if via:
        out["via"] = via
    if ":" in row.origin:
        out["source"] = row.origin.split(":", 1)[1]
    if row.notes:
        out["x-inferred"] = "; ".join(row.notes)
    out["x-from"] = row.found
    out["x-value"] = row.value_from or "unknown"
    if row.symbol and row.found in _PLACES:
        out["x-confirm"] = f"named only in the {_PLACES[row.found]}: confirm the method returns it"
    return out


def _source(page: Page, fields: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"doc": page.doc, "format": page.format, "lang": page.lang}
    if fields:
        out["fields"] = fields
    return out


# --------------------------------------------------------------------------- findings


def _check(m: _Merge, rows: list[Row], params: list[ParamDoc], data: dict[str, Any]) -> None:
    lead = m.lead
    table = [r for r in rows if r.origin == "table"]
    m.findings.extend(
        F.other_object(
            lead.method, data.get("summary", ""), [p.doc for p in params], table, lead.doc
        )
    )
    m.findings.extend(F.another_code(table, m.known, lead.doc, {p.doc for p in m.pages}))
    m.findings.extend(F.severity(rows, lead.doc))
    m.findings.extend(F.value_mismatch(rows, m.resolver, lead.doc))
    m.findings.extend(F.prose_only(m.pages, rows, data["returns"]["also"]))
    seen: set[tuple[str, str | None]] = set()
    unique = []
    for finding in m.findings:
        if (finding.kind, finding.code or finding.message) not in seen:
            seen.add((finding.kind, finding.code or finding.message))
            unique.append(finding)
    m.findings[:] = unique
    for finding in m.findings:
        if finding.kind == F.OTHER_OBJECT:
            _echo_localized(m, finding, table)


def _echo_localized(m: _Merge, finding: F.Finding, table: list[Row]) -> None:
    """Name what the translated pages say on that row, so a reader can compare."""
    index = next((i for i, r in enumerate(table) if r.symbol == finding.code), None)
    if index is None:
        return
    notes = []
    for page in m.pages[1:]:
        rows = [r for r in page.rows if r.origin == "table"]
        if page.lang != "en" and index < len(rows):
            notes.append(f"{page.doc} ({page.lang}) says {rows[index].doc!r} on that row")
    if notes:
        i = m.findings.index(finding)
        m.findings[i] = F.Finding(
            finding.kind,
            finding.message + " " + "; ".join(notes) + ".",
            finding.code,
            finding.source,
        )
