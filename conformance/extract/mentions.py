"""Return codes named in a page's text, whatever its format: the reading rules all readers share.

A reader cuts the Return value section into `Block`s (table rows, list items, prose) and the
other sections (Remarks, Parameters, Description) into text; this module decides which symbols
there are return codes of the method. The rules read the page's structure and grammar, never a
header, method or symbol name, so they hold on pages of any header:

- In the Return value section a table row's or list item's leading symbol is a code, however it
  is spelled (IDOK, WSAEFAULT, NERR_Success): the section says what the rows are. Prose names a
  code when the symbol has a status code's shape (E_X, X_E_Y, SEC_I_X, ERROR_X, X_STATUS_Y,
  NERR_X, ..._SUCCESS, HRESULT_FROM_WIN32(X)) or directly follows "returns", except examples
  ("such as E_X": the `also` list), pointers to code lists ("(see DXGI_ERROR)") and negations.
- Elsewhere a sentence names a code of this method only when it says so: a verb of returning
  before the symbol, the method as its subject (its name, "the function", "the call",
  GetLastError), and no negation. A Parameters section speaks of this call throughout, so
  there the subject may be left implicit ("the member that causes ERROR_INVALID_PARAMETER").

Flag and parameter-value tables shaped like return tables are never read as codes: only the
Return value section's tables and lists are. Each `Row` records where it was found (`found`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from conformance.extract.page import Page, Row, squash, unescape_md

# Words that look like symbols but are plain results or types, never return codes.
NOT_CODES = frozenset(
    {
        "TRUE",
        "FALSE",
        "NULL",
        "HRESULT",
        "NTSTATUS",
        "BOOL",
        "BOOLEAN",
        "DWORD",
        "LONG",
        "ULONG",
        "UINT",
        "INT",
        "VOID",
        "LRESULT",
        "LPARAM",
        "WPARAM",
        "HANDLE",
        "NOTE",
        "IMPORTANT",
        "TIP",
        "CAUTION",
        "WARNING",
        "COM",
        "API",
        "DLL",
        "UNICODE",
        "ANSI",
        "ASCII",
        "UTF",
        "GUID",
        "IID",
        "CLSID",
    }
)
_SEVERITY = frozenset({"E", "S", "I", "W"})  # E_X, X_E_Y, SEC_I_X, TLS_W_X, RPC_S_X
_STATUS_WORDS = ("ERROR", "STATUS")
_SUCCESS_WORDS = frozenset({"SUCCESS", "NOERROR"})
_WRAPPERS = ("HRESULT_FROM_WIN32",)

# A symbol in running text: escaped underscores are undone before matching.
_IN_TEXT = re.compile(r"(?<![\w(])[A-Z][A-Za-z0-9_]*(?:\([A-Za-z_][A-Za-z0-9_]*\))?")
_VALUE_TOKEN = re.compile(
    r"^\(?(?:\([A-Za-z_]\w*\))?(0[xX][0-9A-Fa-f]{1,8}|[0-9]{1,10})[Ll]?\)?"
    r"[:.,;]?$"
)
_VALUE_AFTER = re.compile(r" ?(?:[(,] ?)?(0[xX][0-9A-Fa-f]{1,8})[Ll]?\)?")
_LEAD_PUNCT = "*:.,;-–—=|"
_RETURNS_JUST_BEFORE = re.compile(r"\b(?:returns?|return value is)\s+(?:\*\*)?$")
_SENTENCE = re.compile(r"(?<=[.!?;])\s+(?=[^a-z])")


@dataclass
class Block:
    """One piece of a Return value section: a table row, a list item, or a paragraph."""

    kind: str  # row | item | prose
    text: str = ""
    cells: list[str] = field(default_factory=list)
    term: str | None = None  # a definition list's <dt>, when the item has one


# --------------------------------------------------------------------------- symbol shapes


def symbol_like(token: str) -> bool:
    """A name a table or list may lead with: upper-case first part, IDOK or NERR_Success."""
    base, paren, inner = token.partition("(")
    if paren:
        return base in _WRAPPERS and bool(re.fullmatch(r"[A-Za-z_]\w*\)", inner))
    if token in NOT_CODES or len(token) < 3 or not re.fullmatch(r"[A-Z][A-Za-z0-9_]*", token):
        return False
    head = token.split("_", 1)[0]
    return head.isupper() and (("_" in token and head != "") or token.isupper())


def code_shaped(token: str) -> bool:
    """A name spelled as a status code (not a flag or a constant), for symbols in prose."""
    base, paren, _ = token.partition("(")
    if paren:
        return symbol_like(token)
    parts = base.split("_")
    if len(parts) < 2 or not parts[0] or not parts[0].isupper():
        return False
    heads = parts[:-1]
    if any(p in _SEVERITY for p in heads):
        return True
    if any(p in _STATUS_WORDS or (p.endswith("ERR") and p.isupper()) for p in heads):
        return True
    return parts[-1].upper() in _SUCCESS_WORDS or base == "NO_ERROR"


def value_of(token: str) -> int | None:
    """`0x80070057`, `87`, `0x00000080L`, `(DWORD)0xFFFFFFFF`, `(0x5)` as a 32-bit value."""
    match = _VALUE_TOKEN.match(token)
    if not match:
        return None
    value = int(match.group(1), 0) if match.group(1)[:2].lower() == "0x" else int(match.group(1))
    return value if value <= 0xFFFFFFFF else None


def symbols_in(text: str) -> Iterable[re.Match[str]]:
    return _IN_TEXT.finditer(text)


# --------------------------------------------------------------------------- grammar


@dataclass(frozen=True)
class Grammar:
    """How one language says that a call gives a code, who gives it, and that it does not."""

    verb: re.Pattern[str]
    subject: re.Pattern[str]
    negation: re.Pattern[str]
    see: re.Pattern[str]
    examples: re.Pattern[str]
    condition: re.Pattern[str]


GRAMMARS: dict[str, Grammar] = {
    "en": Grammar(
        verb=re.compile(
            r"\b(?:returns?|returned|returning|fails?\s+with|failed\s+with|"
            r"causes?|caused|results?\s+in|is\s+set\s+to)\b",
            re.I,
        ),
        subject=re.compile(
            r"\b(?:the|this|that|each|any|a|an)\s+(?:(?:first|second|next|"
            r"later|subsequent|further|repeated|following)\s+)?(?:function|"
            r"method|call|routine)s?\b|\b(?:subsequent|further|repeated)\s+"
            r"(?:function\s+|method\s+)?calls\b|\b(?:WSA)?GetLastError\b",
            re.I,
        ),
        negation=re.compile(
            r"(?:\bnot|\bnever|n't|\bcannot)\s+(?:\w+\s+){0,2}?"
            r"(?:return|fail|cause|result)",
            re.I,
        ),
        see=re.compile(r"\(\s*see\s+$|\bsee\s+(?:the\s+)?$", re.I),
        examples=re.compile(r"\bsuch\s+as\s+[^.;]*", re.I),
        condition=re.compile(r"^\s*(?:\)?\s*)(?:if|when|on|after|because)\b\s*(.+)$", re.I),
    ),
    "ru": Grammar(
        verb=re.compile(r"(?:возвра\w*|заверша\w*\s+(?:с\s+)?ошибк\w*|приводит\s+к)", re.I),
        subject=re.compile(r"(?:функци\w*|метод\w*|вызов\w*|GetLastError)", re.I),
        negation=re.compile(r"\bне\s+(?:\w+\s+){0,2}?(?:возвра|заверша|привод)", re.I),
        see=re.compile(r"\(\s*см\.\s*$", re.I),
        examples=re.compile(r"такие\s+как\s+[^.;]*", re.I),
        condition=re.compile(r"^\s*(?:если|когда)\s+(.+)$", re.I),
    ),
    "de": Grammar(
        verb=re.compile(
            r"\b(?:gibt|geben|liefert|liefern|zurück\w*|schlägt|schlagen|"
            r"fehl\w*|verursacht)\b",
            re.I,
        ),
        subject=re.compile(
            r"\b(?:die|diese)\s+(?:Funktion|Methode)\b|\b(?:der|dieser)\s+"
            r"Aufruf\b|\bGetLastError\b",
            re.I,
        ),
        negation=re.compile(r"\b(?:nicht|nie|niemals|kein\w*)\b", re.I),
        see=re.compile(r"\(\s*siehe\s+$", re.I),
        examples=re.compile(r"\bwie\s+[^.;]*", re.I),
        condition=re.compile(r"^\s*(?:wenn|falls)\s+(.+)$", re.I),
    ),
    "fr": Grammar(
        verb=re.compile(r"\b(?:renvoie\w*|retourne\w*|échoue\w*|provoque\w*)", re.I),
        subject=re.compile(
            r"\b(?:la|cette)\s+(?:fonction|méthode)\b|\bl['’]appel\b|"
            r"\bGetLastError\b",
            re.I,
        ),
        negation=re.compile(r"\bn(?:e\s+|['’])(?:\w+\s+){0,2}?(?:renvo|retourn|échou)", re.I),
        see=re.compile(r"\(\s*voir\s+$", re.I),
        examples=re.compile(r"\bcomme\s+[^.;]*", re.I),
        condition=re.compile(r"^\s*(?:si|lorsque|quand)\s+(.+)$", re.I),
    ),
}


def grammar(lang: str) -> Grammar:
    return GRAMMARS.get(lang, GRAMMARS["en"])


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE.split(squash(unescape_md(text))) if s]


@lru_cache(maxsize=256)
def self_names(method: str) -> re.Pattern[str]:
    """The method's own name as a page writes it: `Name`, `NameW`, `Iface::Name`, `Name()`."""
    name = method.split("::")[-1]
    stem = name[:-1] if len(name) > 2 and name[-1] in "AW" and name[-2].islower() else name
    return re.compile(rf"\b{re.escape(stem)}(?:[AW]|Ex[AW]?)?\b")


# --------------------------------------------------------------------------- the Return value


def returns_rows(blocks: list[Block], lang: str = "en") -> list[Row]:
    """The codes of a Return value section, in page order, one row per symbol."""
    rows: list[Row] = []
    for block in blocks:
        rows.extend(r for r in _BLOCK_READERS[block.kind](block, lang) if r is not None)
    return unique(rows)


def unique(rows: list[Row]) -> list[Row]:
    """A symbol named twice is one row: the table's or list's when it has one."""
    structured = {r.symbol for r in rows if r.symbol and r.found in ("table", "list")}
    out: list[Row] = []
    seen: set[str] = set()
    for row in rows:
        if row.symbol is None:
            out.append(row)
            continue
        if row.symbol in seen or (row.found == "prose" and row.symbol in structured):
            continue
        seen.add(row.symbol)
        out.append(row)
    return out


def table_row(cells: list[str]) -> Row | None:
    """A return table's row: symbol and value in the leading cells, the description last."""
    if len(cells) < 2:
        return None
    words = [w.strip("*") for c in cells[:-1] for w in unescape_md(c).split()]
    symbol = next((s for w in words if symbol_like(s := w.strip(_LEAD_PUNCT))), None)
    value = next((v for w in words if (v := value_of(w)) is not None), None)
    if symbol is None and value is None:
        return None
    return Row(symbol, value, squash(cells[-1]), found="table")


def list_row(block: Block) -> Row | None:
    """A list item that leads with its code: `S_OK if ...`, `0x80070057: E_INVALIDARG ...`,
    or a definition list's `<dt>RPC_S_OK</dt><dd>...</dd>`. An item that leads with neither a
    symbol nor a hex value (`Possibly other codes ...`) is not a code, nor is a bare number."""
    words = unescape_md(block.term if block.term is not None else block.text).split()
    symbol, value, used = _lead_words(words)
    if symbol is None and (value is None or not _is_hex(words, used)):
        return None
    if block.term is not None:
        doc = squash(block.text)
    else:
        doc = _sentence_case(" ".join(words[used:]).lstrip(_LEAD_PUNCT + " "))
    return Row(symbol, value, doc, origin="table", found="list")


def _lead_words(words: list[str]) -> tuple[str | None, int | None, int]:
    """Symbol and value among an item's first words, in either order, and the words used."""
    symbol, value, used = None, None, 0
    for i, word in enumerate(words[:4]):
        token = word.strip("*")
        bare = token.strip(_LEAD_PUNCT)
        if not bare:
            used = i + 1
        elif value is None and (found := value_of(token)) is not None:
            value, used = found, i + 1
        elif symbol is None and symbol_like(bare):
            symbol, used = bare, i + 1
        else:
            break
    return symbol, value, used


def _is_hex(words: list[str], used: int) -> bool:
    return any("0x" in w.lower() for w in words[:used])


def _sentence_case(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] if text else text


_WINDOW = 80  # how far before a symbol its verb, negation or "see" is looked for


def prose_rows(text: str, lang: str = "en") -> list[Row]:
    """Codes running text of the Return value section names as returned."""
    g = grammar(lang)
    rows: list[Row] = []
    for sentence in sentences(text):
        examples = [m.span() for m in g.examples.finditer(sentence)]
        for match in symbols_in(sentence):
            symbol, start = match.group(0), match.start()
            if any(a <= start < b for a, b in examples):
                continue
            before = sentence[max(0, start - _WINDOW) : start]
            if not (code_shaped(symbol) or (_follows_return(before) and symbol_like(symbol))):
                continue
            if g.see.search(before) or g.negation.search(before):
                continue
            rows.append(
                Row(
                    symbol,
                    _value_after(sentence, match.end()),
                    _condition(sentence, match.end(), g),
                    origin="prose",
                    found="prose",
                )
            )
    return rows


# How each kind of block of the Return value section is read.
_BLOCK_READERS: dict[str, Callable[[Block, str], list[Row | None]]] = {
    "row": lambda block, lang: [table_row(block.cells)],
    "item": lambda block, lang: [list_row(block)],
    "prose": lambda block, lang: list(prose_rows(block.text, lang)),
}


def _follows_return(before: str) -> bool:
    return bool(_RETURNS_JUST_BEFORE.search(before))


def _value_after(text: str, end: int) -> int | None:
    match = _VALUE_AFTER.match(text, end)
    return int(match.group(1), 16) if match else None


def _condition(sentence: str, end: int, g: Grammar) -> str:
    """`X if the buffer is too small` -> `The buffer is too small.`; else the whole sentence."""
    rest = g.condition.match(sentence[end : end + 400])
    if not rest:
        return sentence
    clause = re.split(r"\s+and\s+[A-Z][A-Z0-9_]+\s+if\b|[.;](?:\s|$)", rest.group(1))[0]
    clause = clause.strip().rstrip(".,")
    return _sentence_case(clause) + "." if clause else sentence


# --------------------------------------------------------------------------- other sections


def said_rows(
    text: str, method: str, where: str, lang: str = "en", implicit_subject: bool = False
) -> list[Row]:
    """Codes a Remarks, Parameters or Description text says this method returns."""
    g = grammar(lang)
    own = self_names(method)
    rows: list[Row] = []
    for sentence in sentences(text):
        verb = g.verb.search(sentence)
        if verb is None or not (
            implicit_subject or own.search(sentence) or g.subject.search(sentence)
        ):
            continue
        for match in symbols_in(sentence):
            symbol, start = match.group(0), match.start()
            if start < verb.end() or not code_shaped(symbol):
                continue
            before = sentence[max(0, start - _WINDOW) : start]
            if g.negation.search(before) or g.see.search(before):
                continue
            if all(r.symbol != symbol for r in rows):
                rows.append(
                    Row(
                        symbol,
                        _value_after(sentence, match.end()),
                        sentence,
                        origin="remarks",
                        found=where,
                    )
                )
    return rows


def named(text: str) -> list[str]:
    """Every status-code-shaped symbol a text names, in order (for prose-only findings)."""
    return list(
        dict.fromkeys(m.group(0) for m in symbols_in(unescape_md(text)) if code_shaped(m.group(0)))
    )


def block_text(block: Block) -> str:
    if block.kind == "row":
        return " ".join(block.cells)
    return f"{block.term} {block.text}" if block.term else block.text


def take_said(
    page: Page,
    blocks: list[Block],
    where: str,
    implicit_subject: bool = False,
    label: str | None = None,
) -> None:
    """Add to the page the codes these blocks say the method returns (after the codes it
    already has), and note the status codes they name without saying so (`prose_codes`)."""
    known = {r.symbol for r in page.rows}
    texts = [block_text(b) for b in blocks]
    for text in texts:
        for row in said_rows(text, page.method, where, page.lang, implicit_subject):
            if row.symbol not in known:
                page.rows.append(row)
                known.add(row.symbol)
    page.prose_codes.extend((s, label or where) for t in texts for s in named(t) if s not in known)
