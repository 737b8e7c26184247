"""One documentation page, read into the facts a spec needs, whatever format it came in.

Every format reader (`sdkapi`, `win32md`, `rendered`) returns a `Page`; merging and findings
read only `Page`s. `read_page` guards the door: a page that is empty, binary, not UTF-8,
enormous or not a method page raises `PageError` with one sentence a person can act on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from conformance.errors import ConformanceError

MAX_BYTES = 1024 * 1024

SDK_API, WIN32_MD, RENDERED = "sdk-api-md", "win32-md", "rendered-text"


class PageError(ConformanceError):
    """A page that cannot be extracted; the message names the page and the reason."""

    def __init__(self, doc: str, message: str, skipped: bool = False):
        super().__init__(f"{doc}: {message}")
        self.doc = doc
        self.reason = message
        self.skipped = skipped  # not a method page: nothing to extract, nothing wrong


@dataclass
class Row:
    """One documented return code: a table row, or a code the prose names."""

    symbol: str | None
    value: int | None
    doc: str = ""
    via: str | None = None  # call | completion, where the page says so
    origin: str = "table"  # table (a row that aligns across pages) | prose | remarks
    notes: list[str] = field(default_factory=list)  # how a missing symbol or value was inferred
    found: str = "table"  # where: table | list | prose | remarks | parameters | description
    value_from: str | None = None  # "printed", or the source that resolved it; None: unknown


@dataclass
class ParamDoc:
    name: str
    direction: str | None = None
    type: str | None = None
    optional: bool = False
    retval: bool = False
    nullable: bool = False
    is_async: bool = False
    special: list[str] = field(default_factory=list)
    doc: str = ""


@dataclass
class Page:
    """The facts of one page; None means the page does not say."""

    doc: str
    format: str
    lang: str
    method: str
    path: str = ""
    return_type: str | None = None
    summary: str = ""
    deprecated: str | None = None
    header: str | None = None
    dll: str | None = None
    charset: str | None = None
    twin: str | None = None
    iid: str | None = None
    params: list[ParamDoc] = field(default_factory=list)
    signature: bool = False  # the params (names, types) come from a syntax block
    rows: list[Row] = field(default_factory=list)
    table: bool = False
    also: list[str] = field(default_factory=list)
    convention: str | None = None
    delivery: str | None = None
    requirements: dict[str, str] = field(default_factory=dict)
    prose_codes: list[tuple[str, str]] = field(default_factory=list)  # (symbol, where)
    catalog: bool = False  # a list of codes (no method): used to name codes and check values

    @property
    def kind(self) -> str:
        return "com-method" if "::" in self.method else "function"

    @property
    def interface(self) -> str | None:
        return self.method.split("::")[0] if "::" in self.method else None

    @property
    def stripped(self) -> bool:
        """Symbols were lost in rendering: rows carry descriptions only."""
        return bool(self.rows) and all(r.symbol is None for r in self.rows if r.origin == "table")


# --------------------------------------------------------------------------- reading


def decode(raw: bytes | str, doc: str) -> str:
    if len(raw) > MAX_BYTES:
        raise PageError(doc, f"page is larger than {MAX_BYTES} bytes")
    if isinstance(raw, bytes):
        if b"\x00" in raw[:8192]:
            raise PageError(doc, "binary file (NUL bytes), not a documentation page")
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise PageError(doc, f"not UTF-8 text (bad byte at offset {exc.start})") from None
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in text:
        raise PageError(doc, "binary content (NUL characters), not a documentation page")
    if not text.strip():
        raise PageError(doc, "the page is empty")
    sample = text[:4096]
    if len(_CONTROL.findall(sample)) > 0.1 * len(sample):
        raise PageError(doc, "garbled text (mostly control characters), not a page")
    return text


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]")


def detect_format(text: str) -> str:
    """sdk-api source has `## -returns`-style headings; win32 source has front matter."""
    head = text.lstrip()[:200_000]
    if re.search(r"^#{2,3} -(?:description|parameters|param|returns|remarks)\b", head, re.M):
        return SDK_API
    if head.startswith("---\n") or re.search(
        r"^## (?:Syntax|Return value|Parameters)\s*$", head, re.M
    ):
        return WIN32_MD
    return RENDERED


# --------------------------------------------------------------------------- shared text facts

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
SYMBOL = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+(?:\([A-Z][A-Z0-9_]*\))?")
HEX = re.compile(r"^(0[xX][0-9A-Fa-f]{1,8}|0|[1-9][0-9]{0,9})[Ll]?$")
_CODE_BASE = re.compile(r"^(?:[A-Z0-9]+_)*[ES]_[A-Z0-9_]+$|^(?:ERROR|ISDSC|STATUS)_[A-Z0-9_]+$")


def is_code_symbol(name: str) -> bool:
    """A return-code name (S_OK, VDS_E_X, ERROR_X, HRESULT_FROM_WIN32(X)), not a constant."""
    base, _, inner = name.partition("(")
    if inner:
        return base == "HRESULT_FROM_WIN32" and bool(_CODE_BASE.match(inner.rstrip(")")))
    return bool(_CODE_BASE.match(base))


def parse_value(text: str) -> int | None:
    """`0x80042709L`, `0x80042709` or `0` as an unsigned 32-bit value; None otherwise."""
    match = HEX.match(text.strip())
    if not match:
        return None
    value = int(match.group(1), 0)
    return value if value <= 0xFFFFFFFF else None


def code_row(cells: list[str]) -> Row | None:
    """A row of a code table: symbol and value in the leading cells, description last."""
    if len(cells) < 2:
        return None
    words = [t for c in cells[:-1] for t in unescape_md(c).split()]
    symbol = next((t for t in words if SYMBOL.fullmatch(t) and is_code_symbol(t)), None)
    value = next((v for t in words if (v := parse_value(t.strip("()[],"))) is not None), None)
    doc = squash(cells[-1])
    if symbol is None and value is None:
        return None
    return Row(symbol, value, doc)


def unescape_md(text: str) -> str:
    r"""Markdown escapes that survive as text in symbol cells (`S\_OK`)."""
    return text.replace("\\_", "_").replace("\\[", "[").replace("\\]", "]")


def squash(text: str) -> str:
    return " ".join(text.split())


def directions(tag: str) -> tuple[str | None, bool, bool]:
    """`[in, optional]` -> ('in', optional, retval)."""
    words = {w.strip().lower() for w in tag.strip("[] ").split(",")}
    direction = (
        "inout"
        if {"in", "out"} <= words or "in/out" in words or "inout" in words
        else "out"
        if "out" in words
        else "in"
        if "in" in words
        else None
    )
    return direction, "optional" in words, "retval" in words


def deprecation(text: str) -> str | None:
    """The bracketed notice docs put first: `[Beginning with Windows 8 ... superseded ...]`."""
    text = squash(text)
    if text.startswith("[") and text.endswith("]") and len(text) > 20:
        return text[1:-1].strip()
    return None


def charset_of(name: str, neutral_seen: bool) -> tuple[str | None, str | None]:
    """A/W twins: `XyzA` is ANSI with twin `XyzW` when the page also names `Xyz`."""
    if len(name) > 2 and name[-1] in "AW" and name[-2].islower() and neutral_seen:
        twin = name[:-1] + ("W" if name[-1] == "A" else "A")
        return ("ansi" if name[-1] == "A" else "unicode"), twin
    return None, None


SIGNATURE_PARAM = re.compile(
    r"^\s*(\[[^\]]*\])?\s*((?:const\s+)?[A-Za-z_][A-Za-z0-9_]*(?:\s*\*+\s*|\s+))"
    r"(\**)([A-Za-z_][A-Za-z0-9_]*)\s*(?:\[\])?\s*,?\s*$"
)


_DECLARATION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_ ]*?)\s+(?:\w+\s+)?([A-Za-z_]\w*)\s*\((.*)$")


def declaration(line: str, name: str) -> re.Match[str] | None:
    """`RET [CALLCONV] name(...` for this name, else None. Runs of blanks are read as one
    first: the pattern's adjacent blank classes would otherwise try every split of a long run
    (quadratic in its length on a page that pads a line with spaces)."""
    if name not in line:
        return None
    match = _DECLARATION.match(_squeezed(line))
    return match if match and match.group(2) == name else None


def _squeezed(text: str) -> str:
    return " ".join(text.split()) if "  " in text or "\t" in text else text


def parse_signature(lines: list[str], name: str) -> tuple[str | None, list[ParamDoc]] | None:
    """A C declaration `RET Name(\\n [in] TYPE name,\\n ...);` into return type and params."""
    start = next((i for i, line in enumerate(lines) if declaration(line, name)), None)
    if start is None:
        return None
    head = declaration(lines[start], name)
    assert head is not None
    ret = head.group(1).split()[-1]
    params: list[ParamDoc] = []
    for line in [head.group(3), *lines[start + 1 :]]:
        text = _squeezed(line.strip())
        if not text or text.startswith(")") or text == "void":
            if text.startswith(")") or (not text and params):
                break
            continue
        match = SIGNATURE_PARAM.match(text.rstrip(");").rstrip())
        if not match:
            continue
        direction, optional, retval = directions(match.group(1) or "")
        ctype = squash(match.group(2).replace("const ", "")).rstrip()
        stars = match.group(3) + "".join(ch for ch in match.group(2) if ch == "*")
        base = ctype.replace("*", "").strip()
        ptype = f"{base} {stars}" if stars else base
        params.append(ParamDoc(match.group(4), direction, ptype, optional, retval))
        if text.endswith((");", ")")):
            break
    return ret, params


# --------------------------------------------------------------------------- English prose

ALSO_PHRASES: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = (
    (
        re.compile(
            r"VDS-specific return values|VDS-spezifische|spécifiques à VDS|"
            r"возвращаемые значения VDS",
            re.I,
        ),
        ("VDS_HRESULT",),
    ),
    (re.compile(r"converted system error codes|HRESULT_FROM_WIN32", re.I), ("HRESULT_FROM_WIN32",)),
    (re.compile(r"Win32 or iSCSI error code", re.I), ("WIN32_ERROR", "ISDSC_STATUS")),
)
SUCH_AS = re.compile(
    r"(?:standard HRESULT values|HRESULT),?\s+(?:such as|такие как|wie|comme)"
    r"\s+([A-Z_]+(?:\s*(?:,|or|или|oder|ou)\s*[A-Z_]+)*)",
    re.I,
)


def also_from(text: str) -> list[str]:
    """The "may also return" families a returns paragraph allows, in the order it names them."""
    found: list[tuple[float, str]] = []
    for match in SUCH_AS.finditer(text):
        for sym in re.findall(r"[A-Z][A-Z0-9_]+", match.group(1)):
            if is_code_symbol(sym):
                found.append((match.start(1) + match.group(1).find(sym), sym))
    for pattern, names in ALSO_PHRASES:
        phrase = pattern.search(text)
        if phrase:
            found.extend((phrase.start() + i / 10, n) for i, n in enumerate(names))
    return list(dict.fromkeys(n for _, n in sorted(found)))


def codes_named(text: str) -> list[str]:
    return list(dict.fromkeys(s for s in SYMBOL.findall(text) if is_code_symbol(s)))


DELIVERED = re.compile(
    r"\b(?:returned|reported|delivered)\s+(?:through|via|in|by)\s+the\s+"
    r"(?:\*\*)?(Error|pHrResult|HRESULT)\b",
    re.I,
)


def remark_rows(text: str) -> list[Row]:
    """Codes the Remarks deliver elsewhere (an IVMTask's Error, IVdsAsync::Wait's pHrResult)."""
    rows = []
    for sentence in re.split(r"(?<=[.!?])\s+", squash(text)):
        if not DELIVERED.search(sentence):
            continue
        for symbol in codes_named(sentence):
            after = sentence.split(symbol, 1)[1]
            value = re.match(r"\s*\)?\s*\((0x[0-9A-Fa-f]{1,8})L?\)", after)
            doc = _delivered_condition(sentence)
            rows.append(
                Row(
                    symbol,
                    int(value.group(1), 16) if value else None,
                    doc,
                    via="completion",
                    origin="remarks",
                )
            )
    return rows


def _delivered_condition(sentence: str) -> str:
    """The clause that says when: `... object [if|when] there are no logon sessions ...`."""
    match = re.search(
        r"\b(?:object|property|parameter)\s+(?:if\s+|when\s+)?"
        r"((?:there|the|no|it)\b.+?)\.?$",
        sentence,
    )
    if not match:
        return squash(sentence)
    cond = match.group(1)
    return cond[:1].upper() + cond[1:] + "."


def special_values(doc_html_bold: list[str], ptype: str | None) -> list[str]:
    """Constants a parameter's prose gives a meaning (`If X is ISCSI_ALL_INITIATOR_PORTS`)."""
    skip = {"NULL", "TRUE", "FALSE", "HRESULT", (ptype or "").split()[0] if ptype else ""}
    out = []
    for word in doc_html_bold:
        word = word.strip()
        if (
            re.fullmatch(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+", word)
            and word not in skip
            and not is_code_symbol(word)
            and not _looks_like_type(word)
        ):
            out.append(word)
    return list(dict.fromkeys(out))


def _looks_like_type(word: str) -> bool:
    return word.endswith(("_ID", "_PROP", "_OUTPUT", "_INFO", "_TYPE", "_FLAG"))


_IF_NULL = re.compile(r"\bif\s+[*_]?([a-z_]\w*)[*_]?\s+is\s+(?:\*\*)?null\b")


def nullable_from(doc: str, name: str) -> bool:
    """The prose gives NULL a meaning: `If Portal is null ...`."""
    return any(m.group(1) == name.lower() for m in _IF_NULL.finditer(doc.lower()))


def async_kind(ptype: str | None, doc: str) -> str | None:
    text = f"{ptype or ''} {doc}"
    if "IVdsAsync" in text:
        return "ivdsasync"
    if "IVMTask" in text:
        return "ivmtask"
    return None


# --------------------------------------------------------------------------- requirements

REQUIREMENT_LABELS: dict[str, str] = {
    # English
    "minimum supported client": "client",
    "minimum supported server": "server",
    "target platform": "platform",
    "header": "header",
    "library": "library",
    "dll": "dll",
    "redistributable": "redistributable",
    "end of client support": "end_of_client_support",
    "end of server support": "end_of_server_support",
    "product": "product",
    "iid": "iid",
    "unicode and ansi names": "unicode_ansi",
    # Russian
    "минимальная версия клиента": "client",
    "минимальная версия сервера": "server",
    "целевая платформа": "platform",
    "заголовок": "header",
    "библиотека": "library",
    "распространяемые компоненты": "redistributable",
    "продукт": "product",
    "окончание поддержки клиентов": "end_of_client_support",
    # German
    "unterstützte mindestversion (client)": "client",
    "unterstützte mindestversion (server)": "server",
    "zielplattform": "platform",
    "kopfzeile": "header",
    "bibliothek": "library",
    "verteilbare komponente": "redistributable",
    "produkt": "product",
    # French
    "client minimal pris en charge": "client",
    "serveur minimal pris en charge": "server",
    "plateforme cible": "platform",
    "en-tête": "header",
    "bibliothèque": "library",
    "composant redistribuable": "redistributable",
    "produit": "product",
}
VALUE_PHRASES = {
    "только классические приложения": "desktop apps only",
    "nur Desktop-Apps": "desktop apps only",
    "applications de bureau uniquement": "desktop apps only",
    "Не поддерживается": "None supported",
    "Nicht unterstützt": "None supported",
    "Aucun pris en charge": "None supported",
}


def requirement(label: str, value: str) -> tuple[str, str] | None:
    """A (key, value) for one requirements row, values in English where the phrase is stock."""
    key = REQUIREMENT_LABELS.get(squash(label).lower().rstrip(":"))
    value = squash(unescape_md(value))
    if key is None or not value:
        return None
    for phrase, english in VALUE_PHRASES.items():
        value = value.replace(phrase, english)
    return key, value


def iid_from(text: str) -> str | None:
    match = re.search(
        r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-"
        r"[0-9A-Fa-f]{12}",
        text,
    )
    return match.group(0).lower() if match else None


def finish(page: Page) -> Page:
    """Facts every reader derives the same way once params and prose are known."""
    for param in page.params:
        kind = async_kind(param.type, param.doc) if param.direction in ("out", "inout") else None
        if kind:
            param.is_async = True
            page.delivery = page.delivery or kind
    if page.delivery is None and page.rows:
        page.delivery = "direct"
    if page.convention is None:
        page.convention = _convention(page)
    if page.dll is None and page.requirements.get("dll"):
        page.dll = page.requirements["dll"]
    if page.header is None and page.requirements.get("header"):
        page.header = page.requirements["header"]
    if page.iid is None and page.requirements.get("iid"):
        page.iid = iid_from(page.requirements["iid"])
    page.requirements.pop("iid", None)
    page.requirements.pop("unicode_ansi", None)
    return page


def _convention(page: Page) -> str:
    if page.return_type:
        return "hresult" if page.return_type.upper() == "HRESULT" else "win32"
    symbols = [r.symbol for r in page.rows if r.symbol]
    if any(s.startswith(("ERROR_", "ISDSC_")) for s in symbols) or "WIN32_ERROR" in page.also:
        return "win32"
    return "hresult"


_PROSE_TYPES = (
    (re.compile(r"^The (?:\w+ )?([A-Z][A-Z0-9_]+) (?:of|for)\b"), "{}"),
    (re.compile(r"\baddress of an? (I[A-Za-z0-9]+) interface pointer"), "{} **"),
    (re.compile(r"^The address of an? (I[A-Za-z0-9]+)\b"), "{} **"),
    (re.compile(r"\baddress of an? ([A-Z][A-Z0-9_]+) structure"), "{} *"),
    (re.compile(r"\bpointer to a structure of type ([A-Z][A-Z0-9_]+)"), "{} *"),
    (re.compile(r"^An array of (?:structures of type )?([A-Z][A-Z0-9_]+)"), "{} *"),
)


def type_from_prose(doc: str) -> str | None:
    """The C type a parameter's prose names (`The VDS_OBJECT_ID of the target`), if it does."""
    text = squash(doc)
    for pattern, shape in _PROSE_TYPES:
        match = pattern.search(text)
        if match:
            return shape.format(match.group(1))
    return None


def summary_from(text: str) -> str:
    """`The <b>X</b> function removes ...` -> `Removes ...`, as specs state a summary."""
    text = squash(text)
    match = re.match(r"^The \S+ (?:function|routine|method) (\w)(.*)$", text)
    return match.group(1).upper() + match.group(2) if match else text
