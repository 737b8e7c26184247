"""sdk-api markdown source: YAML front matter, `## -returns` with an HTML table of codes.

The front matter is often the authoring template's placeholders ("The title of the API."), so
each value is taken only when it has the shape of a real one. Parameters are `### -param NAME
[in]` headings; the return table's first cell is `<dl><dt><b>SYMBOL</b></dt><dt>0x…L</dt></dl>`
(sometimes with doubled `<b><b>`), its second the description.
"""

from __future__ import annotations

import re

from conformance.extract import markup
from conformance.extract.page import (
    IDENT,
    SDK_API,
    Page,
    PageError,
    ParamDoc,
    Row,
    also_from,
    charset_of,
    code_row,
    codes_named,
    deprecation,
    directions,
    finish,
    nullable_from,
    prose_rows,
    remark_rows,
    special_values,
    squash,
    summary_from,
    type_from_prose,
)

_TEMPLATE = re.compile(r"\bof (?:the )?API\b|\(ie ", re.I)
_FRONT_REQUIREMENTS = (
    ("req.target-min-winverclnt", "client"), ("req.target-min-winversvr", "server"),
    ("req.target-type", "platform"), ("req.header", "header"), ("req.lib", "library"),
    ("req.dll", "dll"), ("req.redist", "redistributable"),
)
_SHAPES = {"req.header": r".+\.h", "req.lib": r".+\.lib", "req.dll": r".+\.dll",
           "UID": r"N[A-Z]:.+"}
_NOT_METHODS = ("interface", "structure", "enumeration", "union", "macro", "callback",
                "class", "property")


def parse(text: str, doc: str) -> Page:
    meta, body = markup.front_matter(text, doc)
    meta = _real_values(meta)
    secs = markup.sections(body)
    page = Page(doc, SDK_API, "en", _method_id(secs, meta, doc))
    by_title = {s.title.split()[0] if s.title else "": s for s in secs if s.level >= 2}
    described = _description(page, by_title["-description"]) if "-description" in by_title else ""
    page.params = [_param(s) for s in secs if s.title.startswith(("-param ", "- "))]
    if "-returns" not in by_title:
        raise PageError(doc, "no `## -returns` section (truncated page?)")
    _returns(page, by_title["-returns"])
    if "-remarks" in by_title:
        _remarks(page, by_title["-remarks"])
    for param in page.params:
        page.prose_codes.extend((s, f"parameter {param.name}") for s in codes_named(param.doc))
    _front(page, meta, described)
    return finish(page)


def _real_values(meta: dict) -> dict:
    """Drop template placeholders and values without the shape of the real thing."""
    out = {}
    for key, value in meta.items():
        if isinstance(value, str):
            value = value.strip()
            if not value or _TEMPLATE.search(value):
                continue
            shape = _SHAPES.get(str(key))
            if shape and not re.fullmatch(shape, value, re.I):
                continue
        out[str(key)] = value
    return out


def _method_id(secs: list[markup.Section], meta: dict, doc: str) -> str:
    title = next((s.title for s in secs if s.level == 1), None) or meta.get("title")
    if not title:
        raise PageError(doc, "no `# Title` heading naming the method (truncated page?)")
    words = squash(title).split()
    if len(words) > 1 and words[1].lower() in _NOT_METHODS:
        raise PageError(doc, f"a page about the {words[1].lower()} {words[0]}, not a method: "
                             "nothing to extract", skipped=True)
    if not re.fullmatch(rf"{IDENT}(?:::{IDENT})?", words[0]):
        raise PageError(doc, f"the title {title!r} does not name a method or function")
    return words[0]


def _description(page: Page, section: markup.Section) -> str:
    """Deprecation notice and summary; returns the raw description text."""
    texts = [t for b in markup.blocks(section) if (t := b.text())]
    if texts and deprecation(texts[0]):
        page.deprecated = deprecation(texts[0])
        texts = texts[1:]
    if texts:
        page.summary = summary_from(texts[0])
    return " ".join(texts)


def _param(section: markup.Section) -> ParamDoc:
    words = section.title.split(None, 2)
    name = words[1] if words[0] == "-param" else words[1] if len(words) > 1 else words[0]
    tag = section.title.split(name, 1)[1] if name in section.title else ""
    direction, optional, retval = directions(tag)
    dom = section.dom()
    doc = dom.text()
    return ParamDoc(name=name, direction=direction, type=type_from_prose(doc), optional=optional,
                    retval=retval, nullable=nullable_from(doc, name),
                    special=special_values(markup.bold_words(dom), None), doc=doc)


def _returns(page: Page, section: markup.Section) -> None:
    dom = section.dom()
    table = dom.first("table")
    prose = " ".join(_outside_tables(dom))
    page.also = also_from(prose)
    if table is not None:
        page.table = True
        page.rows = [row for cells in markup.table_rows(table) if (row := _row(cells))]
    named = prose_rows(prose)
    if page.rows:
        known = {r.symbol for r in page.rows}
        page.prose_codes.extend((r.symbol, "returns") for r in named
                                if r.symbol and r.symbol not in known)
    else:
        page.rows = named


def _outside_tables(node: markup.Node) -> list[str]:
    out = []
    for child in node.children:
        if isinstance(child, str):
            out.append(child)
        elif child.tag != "table" and child.first("table") is None:
            out.append(child.text())
        elif child.tag != "table":
            out.extend(_outside_tables(child))
    return [squash(t) for t in out if t.strip()]


def _row(cells: list[markup.Node]) -> Row | None:
    """`<td><dl><dt><b>SYMBOL</b></dt><dt>0x…L</dt></dl></td><td>description</td>`."""
    if len(cells) < 2 or cells[0].tag == "th":
        return None
    return code_row(markup.cell_texts(cells))


def _remarks(page: Page, section: markup.Section) -> None:
    text = section.dom().text()
    delivered = remark_rows(text)
    known = {r.symbol for r in page.rows}
    page.rows.extend(r for r in delivered if r.symbol not in known)
    page.prose_codes.extend((s, "remarks") for s in codes_named(text)
                            if s not in known and all(r.symbol != s for r in delivered))


def _front(page: Page, meta: dict, described: str) -> None:
    for key, name in _FRONT_REQUIREMENTS:
        if isinstance(meta.get(key), str):
            page.requirements[name] = squash(meta[key])
    page.header = page.requirements.get("header")
    page.dll = page.requirements.get("dll")
    if not page.summary and isinstance(meta.get("description"), str):
        page.summary = summary_from(meta["description"])
    names = meta.get("req.unicode-ansi") or ""
    neutral = page.method[:-1].lower()
    seen = any(neutral == w.lower().strip(".,") for w in described.split()) or any(
        neutral == str(n).lower() for n in meta.get("api_name") or []) or (
        neutral in str(names).lower())
    page.charset, page.twin = charset_of(page.method, seen)
