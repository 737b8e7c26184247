"""sdk-api markdown source: YAML front matter, `## -returns` with an HTML table of codes.

The front matter is often the authoring template's placeholders ("The title of the API."), so
each value is taken only when it has the shape of a real one. Parameters are `### -param NAME
[in]` headings; the return table's first cell is `<dl><dt><b>SYMBOL</b></dt><dt>0x…L</dt></dl>`
(sometimes with doubled `<b><b>`), its second the description.
"""

from __future__ import annotations

import re

from conformance.extract import markup, mentions
from conformance.extract.page import (
    IDENT,
    SDK_API,
    Page,
    PageError,
    ParamDoc,
    also_from,
    charset_of,
    deprecation,
    directions,
    finish,
    nullable_from,
    remark_rows,
    special_values,
    squash,
    summary_from,
    type_from_prose,
)

_TEMPLATE = re.compile(r"\bof (?:the )?API\b|\(ie ", re.I)
_FRONT_REQUIREMENTS = (
    ("req.target-min-winverclnt", "client"),
    ("req.target-min-winversvr", "server"),
    ("req.target-type", "platform"),
    ("req.header", "header"),
    ("req.lib", "library"),
    ("req.dll", "dll"),
    ("req.redist", "redistributable"),
)
_SHAPES = {
    "req.header": r".+\.h",
    "req.lib": r".+\.lib",
    "req.dll": r".+\.dll",
    "UID": r"N[A-Z]:.+",
}
_NOT_METHODS = (
    "interface",
    "structure",
    "enumeration",
    "union",
    "macro",
    "callback",
    "class",
    "property",
)


def parse(text: str, doc: str) -> Page:
    meta, body = markup.front_matter(text, doc)
    meta = _real_values(meta)
    secs = markup.sections(body)
    page = Page(doc, SDK_API, "en", _method_id(secs, meta, doc))
    by_title = {s.title.split()[0] if s.title else "": s for s in secs if s.level >= 2}
    description = markup.flow(by_title["-description"].dom()) if "-description" in by_title else []
    described = _description(page, description)
    params = [s for s in secs if s.title.startswith(("-param ", "- "))]
    page.params = [_param(s) for s in params]
    if "-returns" not in by_title:
        raise PageError(doc, "no `## -returns` section (truncated page?)")
    _returns(page, by_title["-returns"])
    if "-remarks" in by_title:
        _remarks(page, by_title["-remarks"])
    for param, section in zip(page.params, params, strict=True):
        mentions.take_said(
            page,
            markup.flow(section.dom()),
            "parameters",
            implicit_subject=True,
            label=f"parameter {param.name}",
        )
    mentions.take_said(page, description, "description")
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
        raise PageError(
            doc,
            f"a page about the {words[1].lower()} {words[0]}, not a method: nothing to extract",
            skipped=True,
        )
    if not re.fullmatch(rf"{IDENT}(?:::{IDENT})?", words[0]):
        raise PageError(doc, f"the title {title!r} does not name a method or function")
    return words[0]


def _description(page: Page, blocks: list[markup.Block]) -> str:
    """Deprecation notice and summary; returns the raw description text."""
    texts = [t for b in blocks if (t := mentions.block_text(b))]
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
    return ParamDoc(
        name=name,
        direction=direction,
        type=type_from_prose(doc),
        optional=optional,
        retval=retval,
        nullable=nullable_from(doc, name),
        special=special_values(markup.bold_words(dom), None),
        doc=doc,
    )


def _returns(page: Page, section: markup.Section) -> None:
    """Rows from the section's tables, lists and prose, in page order (see `mentions`)."""
    blocks = markup.flow(section.dom())
    page.also = also_from(" ".join(b.text for b in blocks if b.kind == "prose"))
    page.table = any(b.kind == "row" for b in blocks)
    page.rows = mentions.returns_rows(blocks, page.lang)


def _remarks(page: Page, section: markup.Section) -> None:
    blocks = markup.flow(section.dom())
    delivered = remark_rows(" ".join(mentions.block_text(b) for b in blocks))
    known = {r.symbol for r in page.rows}
    page.rows.extend(r for r in delivered if r.symbol not in known)
    mentions.take_said(page, blocks, "remarks")


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
    seen = (
        any(neutral == w.lower().strip(".,") for w in described.split())
        or any(neutral == str(n).lower() for n in meta.get("api_name") or [])
        or (neutral in str(names).lower())
    )
    page.charset, page.twin = charset_of(page.method, seen)
