"""Documentation defects noticed while extracting, recorded in a spec's `findings`.

Each check is a small function over the merged rows and the pages they came from; none of
them knows a method or family by name. The kinds are stable strings, so a re-extraction can
tell a finding it already recorded from a new one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from conformance.extract.knowledge import Knowledge, meaning
from conformance.extract.page import Page, Row
from conformance.spec.codes import failed, hex32

if TYPE_CHECKING:
    from conformance.extract.resolve import Resolver

OTHER_OBJECT = "description-about-other-object"
ANOTHER_CODE = "description-of-another-code"
VALUE_MISMATCH = "value-disagrees-with-symbol"
SEVERITY = "severity-contradicts-name"
LOCALIZED_MISSING = "localized-rows-missing"
LOCALIZED_REORDERED = "localized-rows-reordered"
SOURCES_DISAGREE = "symbol-disagrees-between-sources"
PROSE_ONLY = "code-in-prose-not-in-table"
NO_CODES = "no-codes-documented"
UNKNOWN_SYMBOL = "symbol-exists-nowhere"
VALUE_UNKNOWN = "value-not-found"

_GENERIC = {
    "operation",
    "method",
    "function",
    "call",
    "request",
    "action",
    "command",
    "task",
    "some",
    "all",
    "not",
    "but",
    "of",
    "the",
    "a",
    "an",
    "at",
    "least",
    "one",
    "any",
    "properties",
    "property",
    "parameter",
    "value",
    "values",
    "object",
    "objects",
}
_STOP = {
    "the",
    "a",
    "an",
    "of",
    "to",
    "for",
    "and",
    "or",
    "in",
    "on",
    "with",
    "by",
    "this",
    "that",
    "is",
    "was",
    "were",
    "are",
    "be",
    "been",
    "successfully",
    "specified",
}


@dataclass(frozen=True)
class Finding:
    kind: str
    message: str
    code: str | None = None
    source: str | None = None

    def as_dict(self) -> dict[str, str]:
        out = {"kind": self.kind}
        if self.code:
            out["code"] = self.code
        if self.source:
            out["source"] = self.source
        out["message"] = self.message
        return out


def _words(text: str) -> dict[str, None]:
    """Content words, singular, in order (a dict keeps the order and acts as a set)."""
    out: dict[str, None] = {}
    for word in re.findall(r"[A-Za-z]+", re.sub(r"([a-z])([A-Z])", r"\1 \2", text)):
        word = word.lower()
        if word not in _STOP and len(word) > 2:
            out[word[:-1] if word.endswith("s") and len(word) > 3 else word] = None
    return out


def other_object(
    method: str, summary: str, param_docs: list[str], rows: list[Row], source: str
) -> list[Finding]:
    """A success row whose subject is an object the method never speaks of."""
    vocabulary = (
        set(_words(method)) | set(_words(summary)) | {w for d in param_docs for w in _words(d)}
    )
    out = []
    for row in rows:
        if row.symbol is None or row.value != 0 or not row.doc:
            continue
        subject = re.split(r"\b(?:was|were|is|are|has|have|could|did)\b", row.doc, maxsplit=1)[0]
        nouns = [w for w in _words(subject) if w not in _GENERIC]
        if nouns and not set(nouns) & vocabulary:
            out.append(
                Finding(
                    OTHER_OBJECT,
                    (
                        f"The {row.symbol} row says {row.doc!r}, which speaks of "
                        f"the {' '.join(nouns)}; {method} does not: the row was likely copied "
                        "from another method's page."
                    ),
                    row.symbol,
                    source,
                )
            )
    return out


def severity(rows: list[Row], source: str) -> list[Finding]:
    """E_ names a failure, S_ a success: a printed value's severity bit must agree. A name
    that ends by saying success (SEC_E_OK, X_E_SUCCESS) is a success whatever its letter."""
    out = []
    for row in rows:
        printed = (row.value_from or "").startswith("printed")
        if row.symbol is None or row.value is None or not printed:
            continue
        base = row.symbol.split("(")[0]
        is_error = (base.startswith("E_") or "_E_" in base) and not base.endswith(_SUCCESS_ENDS)
        is_success = base.startswith("S_") or "_S_" in base
        if (is_error and not failed(row.value)) or (is_success and failed(row.value)):
            which = "a failure" if is_error else "a success"
            out.append(
                Finding(
                    SEVERITY,
                    (
                        f"{row.symbol} names {which} but {hex32(row.value)} has the severity bit "
                        f"{'clear' if is_error else 'set'}."
                    ),
                    row.symbol,
                    source,
                )
            )
    return out


_SUCCESS_ENDS = ("_OK", "_SUCCESS", "_NOERROR")


def value_mismatch(rows: list[Row], known: Resolver, source: str) -> list[Finding]:
    """A printed value that differs from what the symbol is known to be (win32metadata
    first): the page's value is kept, the disagreement reported."""
    out = []
    for row in rows:
        printed = (row.value_from or "").startswith("printed")
        if row.symbol is None or row.value is None or not printed:
            continue
        found = known.value(row.symbol)
        if found is not None and found[0] != row.value:
            out.append(
                Finding(
                    VALUE_MISMATCH,
                    (
                        f"The page gives {row.symbol} as {hex32(row.value)}, but it is "
                        f"{hex32(found[0])} ({found[1]}); the page's value is kept."
                    ),
                    row.symbol,
                    source,
                )
            )
        elif (
            row.symbol.startswith("HRESULT_FROM_WIN32(")
            and row.value != 0
            and (row.value & 0xFFFF0000) != 0x80070000
        ):
            out.append(
                Finding(
                    VALUE_MISMATCH,
                    (
                        f"{row.symbol} is documented as {hex32(row.value)}, which is not a "
                        "FACILITY_WIN32 HRESULT (0x8007xxxx)."
                    ),
                    row.symbol,
                    source,
                )
            )
    return out


def unknown_symbol(
    symbol: str, right: str, value: int | None, known: Resolver, source: str
) -> Finding:
    """A symbol no header, spec or code page defines, one spelling away from one that is."""
    found = known.value(right)
    theirs = f" ({hex32(found[0])} in {found[1]})" if found else ""
    printed = f" printed as {hex32(value)}" if value is not None else ""
    return Finding(
        UNKNOWN_SYMBOL,
        (
            f"{symbol}{printed} is defined nowhere (win32metadata, codes.yaml, the specs, the code "
            f"pages); did you mean {right}{theirs}? Not taken as a code."
        ),
        symbol,
        source,
    )


def value_unknown(symbol: str, source: str) -> Finding:
    return Finding(
        VALUE_UNKNOWN,
        (
            f"{symbol} has no value on the page, and neither win32metadata, codes.yaml, the specs "
            "nor a code page gives one: the value is left null."
        ),
        symbol,
        source,
    )


def another_code(rows: list[Row], known: Knowledge, source: str, own: set[str]) -> list[Finding]:
    """A row whose description is, word for word, the one documented for a different code.

    `own` are this method's pages: their rows do not vouch for themselves.
    """
    out = []
    for row in rows:
        if row.symbol is None or not row.doc or len(row.doc) < 25:
            continue
        said: dict[str, list[str]] = {s: [w] for s, w in known.named_by_meaning(row.doc).items()}
        for symbol, docs in known.batch_meanings.get(meaning(row.doc), {}).items():
            said.setdefault(symbol, []).extend(d for d in docs if d not in own)
        said = {s: w for s, w in said.items() if w}
        mine = len(said.get(row.symbol, []))
        rivals = {s: w for s, w in said.items() if s != row.symbol and len(w) > mine}
        if rivals:
            where = "; ".join(f"{s} in {', '.join(sorted(set(w)))}" for s, w in rivals.items())
            agree = f" ({', '.join(said[row.symbol])} agrees with the row)" if mine else ""
            out.append(
                Finding(
                    ANOTHER_CODE,
                    (
                        f"The {row.symbol} row says {row.doc!r}, the description documented for "
                        f"{where}{agree}."
                    ),
                    row.symbol,
                    source,
                )
            )
    return out


def prose_only(pages: list[Page], rows: list[Row], also: list[str]) -> list[Finding]:
    """A code the prose names as returned that the table does not list."""
    listed = {r.symbol for r in rows} | set(also)
    out, seen = [], set()
    for page in pages:
        for symbol, where in page.prose_codes:
            if symbol in listed or symbol in seen:
                continue
            seen.add(symbol)
            out.append(
                Finding(
                    PROSE_ONLY,
                    (
                        f"{symbol} is named in the {where} of {page.doc} but is not in the return "
                        "table."
                    ),
                    None,
                    page.doc,
                )
            )
    return out


def localized(base: Page, other: Page, pairs: dict[int, int]) -> list[Finding]:
    """A translated table with rows missing, or in another order than the English one."""
    mine = [r for r in base.rows if r.origin == "table"]
    theirs = [r for r in other.rows if r.origin == "table"]
    out = []
    if len(theirs) != len(mine):
        out.append(
            Finding(
                LOCALIZED_MISSING,
                (
                    f"{other.doc} ({other.lang}) lists {len(theirs)} return codes where {base.doc} "
                    f"({base.lang}) lists {len(mine)}; rows are missing from one of them."
                ),
                None,
                other.doc,
            )
        )
    order = [pairs[i] for i in sorted(pairs)]
    if order != sorted(order):
        out.append(
            Finding(
                LOCALIZED_REORDERED,
                (
                    f"{other.doc} ({other.lang}) lists the return codes in another order than "
                    f"{base.doc}: rows {', '.join(str(j + 1) for j in order)}."
                ),
                None,
                other.doc,
            )
        )
    return out


def disagreement(symbol: str, other_symbol: str, base: Page, other: Page) -> Finding:
    return Finding(
        SOURCES_DISAGREE,
        (f"{base.doc} names this row {symbol}, {other.doc} names it {other_symbol}."),
        symbol,
        other.doc,
    )


def no_codes(page: Page) -> Finding:
    return Finding(
        NO_CODES,
        (
            f"{page.doc} names no return code (no table, no `Returns X if ...`): the spec needs at "
            "least one."
        ),
        None,
        page.doc,
    )
