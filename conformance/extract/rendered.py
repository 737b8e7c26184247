"""Rendered page text (learn.microsoft.com as text), English or localized.

There is no markup left to parse: the page is lines. The title line names the method ("X
method (vds.h)", "Метод X (vds.h)"); headings are translated or missing altogether (page 003
has no "Syntax", "Parameters" or "Requirements" line), so each part is recognised by its own
shape: the C declaration, `[in] name` parameter lines, the return table's header row, and
requirement rows that begin with a known label. Rendering often strips the symbol column of
the return table: rows then carry descriptions only and merging names them.
"""

from __future__ import annotations

import re

from conformance.extract import mentions
from conformance.extract.mentions import Block
from conformance.extract.page import (
    IDENT,
    RENDERED,
    REQUIREMENT_LABELS,
    Page,
    PageError,
    ParamDoc,
    Row,
    also_from,
    declaration,
    deprecation,
    directions,
    finish,
    nullable_from,
    parse_signature,
    remark_rows,
    requirement,
    special_values,
    squash,
    summary_from,
    type_from_prose,
    unescape_md,
)

HEADINGS = {
    "syntax": ("syntax", "синтаксис", "syntaxe"),
    "parameters": ("parameters", "параметры", "parameter", "paramètres"),
    "returns": (
        "return value",
        "возвращаемое значение",
        "rückgabewert",
        "valeur de retour",
        "valeur retournée",
    ),
    "remarks": ("remarks", "комментарии", "примечания", "hinweise", "bemerkungen", "remarques"),
    "requirements": (
        "requirements",
        "требования",
        "anforderungen",
        "configuration requise",
        "spécifications",
    ),
    "see": ("see also", "см. также", "weitere informationen", "siehe auch", "voir aussi"),
}
_HEADING_OF = {title: key for key, titles in HEADINGS.items() for title in titles}
_TABLE_HEADERS = (
    "return code",
    "возвращаемый код",
    "rückgabecode",
    "code de retour",
    "code/valeur de retour",
)
_PARAM_LINE = re.compile(rf"^\[([a-z, ]+)\]\s+({IDENT})\s*$", re.I)
_LABELS_LONGEST_FIRST = sorted(REQUIREMENT_LABELS, key=len, reverse=True)
_TITLE_WORDS = {
    "method",
    "function",
    "метод",
    "функция",
    "methode",
    "funktion",
    "méthode",
    "fonction",
}


def parse(text: str, doc: str) -> Page:
    lines = [line.rstrip() for line in text.split("\n")]
    title = next((line for line in lines if line.strip()), "")
    method, header, lang = _title(title, text, doc)
    page = Page(doc, RENDERED, lang, method, header=header)
    parts = _parts(lines[lines.index(title) + 1 :])
    _intro(page, parts.get("intro", []))
    _syntax(page, lines)
    _params(page, parts.get("parameters", []) or parts.get("intro", []))
    if "returns" not in parts:
        raise PageError(doc, "no return-value section (truncated page?)")
    _returns(page, parts["returns"])
    if "remarks" in parts:
        _remarks(page, parts["remarks"])
    _requirements(page, parts.get("requirements", []) + parts.get("returns", []))
    for param in page.params:
        mentions.take_said(
            page,
            [Block("prose", param.doc)],
            "parameters",
            implicit_subject=True,
            label=f"parameter {param.name}",
        )
    intro = [line for line in parts.get("intro", []) if not _is_code_line(line.strip(), page)]
    mentions.take_said(page, line_blocks(intro), "description")
    return finish(page)


def _title(title: str, text: str, doc: str) -> tuple[str, str | None, str]:
    words = [w for w in re.split(r"[\s-]+", title) if w]
    method = next((w for w in words if re.fullmatch(rf"{IDENT}::{IDENT}", w)), None)
    if method is None:
        names = [w for w in words if re.fullmatch(IDENT, w) and w.lower() not in _TITLE_WORDS]
        if not any(w.lower() in _TITLE_WORDS for w in words) or not names:
            raise PageError(
                doc,
                f"the first line {title[:80]!r} does not name a method "
                "('X method (vds.h)'); not a reference page?",
            )
        method = names[0]
    header = re.search(r"\(([\w.]+\.h)\)", title)
    return method, header.group(1) if header else None, _language(title, text)


def _language(title: str, text: str) -> str:
    sample = title + text[:4000]
    if re.search(r"[а-яА-ЯёЁ]", sample):
        return "ru"
    lowered = sample.lower()
    if re.search(r"\b(?:méthode|fonction|paramètres|valeur de retour)\b", lowered):
        return "fr"
    if re.search(r"(?:-methode|\bfunktion\b|rückgabewert|anforderungen)", lowered):
        return "de"
    return "en"


def _parts(lines: list[str]) -> dict[str, list[str]]:
    """Lines grouped under the headings present; what precedes them is the intro."""
    parts: dict[str, list[str]] = {"intro": []}
    current = "intro"
    for line in lines:
        key = _HEADING_OF.get(squash(line).lower())
        if key:
            current = key
            parts.setdefault(key, [])
            continue
        parts[current].append(line)
    return parts


def _intro(page: Page, lines: list[str]) -> None:
    paragraphs = [squash(line) for line in lines if line.strip()]
    if paragraphs and deprecation(paragraphs[0]):
        page.deprecated = deprecation(paragraphs[0])
        paragraphs = paragraphs[1:]
    if paragraphs and not _is_code_line(paragraphs[0], page):
        page.summary = summary_from(paragraphs[0])


def _is_code_line(line: str, page: Page) -> bool:
    return declaration(line, page.method.split("::")[-1]) is not None


def _syntax(page: Page, lines: list[str]) -> None:
    found = parse_signature(lines, page.method.split("::")[-1])
    if found:
        page.return_type, page.params = found
        page.signature = bool(page.params) or page.return_type is not None


def _params(page: Page, lines: list[str]) -> None:
    """`[in] name` lines each followed by their description."""
    docs: dict[str, tuple[str, list[str]]] = {}
    current: str | None = None
    for line in lines:
        match = _PARAM_LINE.match(line.strip())
        if match:
            current = match.group(2)
            docs[current] = (match.group(1), [])
        elif current and line.strip():
            if _is_code_line(line.strip(), page):
                current = None
                continue
            docs[current][1].append(line.strip())
    by_name = {p.name: p for p in page.params}
    for name, (tag, text) in docs.items():
        doc = " ".join(text)
        param = by_name.get(name)
        if param is None:
            direction, optional, retval = directions(tag)
            param = ParamDoc(name, direction, type_from_prose(doc), optional, retval)
            page.params.append(param)
            by_name[name] = param
        param.doc = doc
        param.nullable = nullable_from(doc, name) if page.lang == "en" else False
        if page.lang == "en":
            param.special = special_values(re.findall(r"\b[A-Z][A-Z0-9_]+\b", doc), param.type)


def _returns(page: Page, lines: list[str]) -> None:
    """Prose and lists, the return table (a header row, then its rows), more prose."""
    start = next(
        (i for i, line in enumerate(lines) if squash(line).lower().startswith(_TABLE_HEADERS)), None
    )
    before = lines if start is None else lines[:start]
    page.also = also_from(" ".join(squash(line) for line in before if line.strip()))
    rows = mentions.returns_rows(line_blocks(before), page.lang)
    if start is not None:
        page.table = True
        body, after = _table_lines(lines[start + 1 :])
        rows += _pipe_rows(body) if "|" in lines[start] else _text_rows(body)
        rows += mentions.returns_rows(line_blocks(after), page.lang)
    page.rows = mentions.unique(rows)


_BULLET = re.compile(r"^(?:[-*•·▪◦]|\d{1,2}[.)])\s+")


def line_blocks(lines: list[str]) -> list[Block]:
    """Rendered lines as blocks: bulleted lines are list items, a line holding only a symbol
    (and a value) with its description on the next line is a definition, the rest prose."""
    text = [squash(line) for line in lines]
    text = [line for line in text if line]
    out: list[Block] = []
    i = 0
    while i < len(text):
        line = text[i]
        bullet = _BULLET.match(line)
        if bullet:
            out.append(Block("item", line[bullet.end() :]))
        elif _is_term(line) and i + 1 < len(text) and not _is_term(text[i + 1]):
            out.append(Block("item", text[i + 1], term=line))
            i += 1
        else:
            out.append(Block("prose", line))
        i += 1
    return out


def _is_term(line: str) -> bool:
    words = line.split()
    return (
        0 < len(words) <= 3
        and mentions.symbol_like(words[0])
        and all(mentions.value_of(w) is not None for w in words[1:])
    )


def _table_lines(lines: list[str]) -> tuple[list[str], list[str]]:
    """The table body (up to a blank line, a heading or a requirements row), and the rest."""
    out: list[str] = []
    for i, line in enumerate(lines):
        text = line.strip()
        if "-" in text and set(text) <= set("-|: "):
            continue
        if _HEADING_OF.get(squash(text).lower()) or (text and requirement_row(text)):
            return out, []
        if not text:
            if out:
                return out, lines[i + 1 :]
            continue
        out.append(line)
    return out, []


def _pipe_rows(lines: list[str]) -> list[Row]:
    """`code | description |` rows, where a stripped code cell is empty or only a newline."""
    cells = "\n".join(lines).split("|")
    rows = []
    for code, desc in zip(cells[0::2], cells[1::2], strict=False):
        symbol, value = _code_cell(code)
        doc = squash(desc)
        if symbol or value is not None or doc:
            rows.append(Row(symbol, value, doc))
    return rows


def _text_rows(lines: list[str]) -> list[Row]:
    """One line per description; a symbol line (and a value line) starts a row when present."""
    rows: list[Row] = []
    for line in (squash(x) for x in lines):
        if not line:
            continue
        if mentions.symbol_like(line):
            rows.append(Row(line, None, ""))
        elif (value := _line_value(line)) is not None and rows and rows[-1].value is None:
            rows[-1].value = value
        elif rows and rows[-1].symbol and not rows[-1].doc:
            rows[-1].doc = line
        else:
            rows.append(Row(None, None, line))
    return rows


def _line_value(line: str) -> int | None:
    """`0x80042709L`, `87`, `2147942405 (0x80070005)`: a line that is only a value."""
    words = line.split()
    if not 0 < len(words) <= 2 or any(mentions.value_of(w) is None for w in words):
        return None
    return mentions.value_of(words[0])


def _code_cell(text: str) -> tuple[str | None, int | None]:
    words = unescape_md(text).split()
    symbol = next((w for w in words if mentions.symbol_like(w)), None)
    value = next((v for w in words if (v := mentions.value_of(w)) is not None), None)
    return symbol, value


def _remarks(page: Page, lines: list[str]) -> None:
    blocks = line_blocks(lines)
    text = " ".join(b.text for b in blocks if b.kind == "prose")
    delivered = remark_rows(text) if page.lang == "en" else []
    known = {r.symbol for r in page.rows}
    page.rows.extend(r for r in delivered if r.symbol not in known)
    mentions.take_said(page, blocks, "remarks")


def requirement_row(line: str) -> tuple[str, str] | None:
    """`Label | value |` or `Label value` where the label is a known requirement label."""
    if "|" in line:
        cells = [c.strip() for c in line.split("|")]
        return requirement(cells[0], cells[1]) if len(cells) > 1 else None
    lowered = line.lower()
    for label in _LABELS_LONGEST_FIRST:
        if lowered.startswith(label) and lowered[len(label) : len(label) + 1] == " ":
            return requirement(label, line[len(label) + 1 :])
    return None


def _requirements(page: Page, lines: list[str]) -> None:
    for line in lines:
        found = requirement_row(line.strip())
        if found and found[0] not in page.requirements:
            page.requirements[found[0]] = found[1]
    if page.header is None:
        page.header = page.requirements.get("header")
