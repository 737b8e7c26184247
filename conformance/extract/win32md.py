"""win32 markdown source (MicrosoftDocs/win32): front matter, a Syntax block, pipe tables.

The return table is a markdown pipe table whose code cell holds inline HTML around markdown:
`<dl> <dt>**S\\_OK**</dt> <dt>0</dt> </dl>`; markdown-it renders it and html.parser reads it,
so the escaped underscores come out as plain ones. Remarks may name a code delivered elsewhere
(an IVMTask's Error property); the Requirements table may carry the interface's IID.
"""

from __future__ import annotations

import re

from conformance.extract import markup
from conformance.extract.page import (
    DELIVERED,
    IDENT,
    WIN32_MD,
    Page,
    PageError,
    ParamDoc,
    Row,
    also_from,
    code_row,
    codes_named,
    deprecation,
    directions,
    finish,
    nullable_from,
    parse_signature,
    prose_rows,
    remark_rows,
    requirement,
    special_values,
    summary_from,
    type_from_prose,
    unescape_md,
)

_SECTION_KEYS = {"syntax": "syntax", "parameters": "parameters", "return value": "returns",
                 "error codes": "returns", "remarks": "remarks", "requirements": "requirements"}


def parse(text: str, doc: str) -> Page:
    meta, body = markup.front_matter(text, doc)
    secs = markup.sections(body)
    try:
        method = _method_id(secs, meta, doc)
    except PageError as exc:
        catalog = _catalog(secs, doc)
        if catalog is not None:
            return catalog
        title = next((s.title for s in secs if s.level == 1), None)
        if title:
            raise PageError(doc, f"{title!r} is not a method page and lists no codes: nothing "
                                 "to extract", skipped=True) from None
        raise exc from None
    named = {_SECTION_KEYS[s.title.lower()]: s for s in secs
             if s.level == 2 and s.title.lower() in _SECTION_KEYS}
    if method.endswith("()") and "syntax" in named:  # a property: the accessor is the method
        method = _accessor(method[:-2], named["syntax"], doc)
    page = Page(doc, WIN32_MD, "en", method)
    intro = next((s for s in secs if s.level == 1), None)
    if intro is not None:
        _intro(page, intro)
    if "syntax" in named:
        _syntax(page, named["syntax"])
    if "parameters" in named:
        _params(page, named["parameters"])
    if "returns" not in named:
        catalog = _catalog(secs, doc)
        if catalog is not None:
            return catalog
        if method.split("::")[-1].startswith(("get_", "put_")):
            raise PageError(doc, f"the property {method} documents no error codes: nothing to "
                                 "extract", skipped=True)
        raise PageError(doc, "no `## Return value` or `## Error codes` section (truncated?)")
    _returns(page, named["returns"])
    if "remarks" in named:
        _remarks(page, named["remarks"])
    if "requirements" in named:
        _requirements(page, named["requirements"])
    locations = [str(x) for x in meta.get("api_location") or [] if isinstance(x, str)]
    page.header = page.header or next((x for x in locations if x.lower().endswith(".h")), None)
    page.dll = page.dll or next((x for x in locations if x.lower().endswith(".dll")), None)
    if not page.summary and isinstance(meta.get("description"), str):
        page.summary = summary_from(meta["description"])
    return finish(page)


def _method_id(secs: list[markup.Section], meta: dict, doc: str) -> str:
    """`# IVMGuestOS::Logoff method`, else front matter `api_name: [IVMGuestOS.Logoff]`."""
    title = next((s.title for s in secs if s.level == 1), "")
    match = re.match(rf"^({IDENT}(?:::{IDENT})?)\s+(method|function|property)\b", title)
    if match:
        return match.group(1) + ("()" if match.group(2) == "property" else "")
    if title and re.match(rf"^{IDENT}\s+(?:interface|structure|enumeration|property)\b", title):
        raise PageError(doc, f"a page about {title!r}, not a method: nothing to extract",
                        skipped=True)
    names = [str(n) for n in meta.get("api_name") or []]
    if names and re.fullmatch(rf"{IDENT}(?:\.{IDENT})?", names[0]):
        return names[0].replace(".", "::")
    raise PageError(doc, "no `# X method` title and no api_name naming the method")


def _accessor(prop: str, syntax: markup.Section, doc: str) -> str:
    """`IVMGuestOS::ComputerName` property -> the `get_ComputerName` its Syntax declares."""
    interface, _, name = prop.partition("::")
    for code in markup.fences(syntax):
        found = re.search(rf"\b((?:get|put|putref)_{name})\s*\(", code)
        if found:
            return f"{interface}::{found.group(1)}"
    raise PageError(doc, f"the property {prop} declares no get_/put_ accessor in its Syntax")


def _catalog(secs: list[markup.Section], doc: str) -> Page | None:
    """A page that lists codes for no one method (VDS common return codes, ISDSC statuses)."""
    rows = []
    for section in secs:
        for table in section.dom().iter("table"):
            rows.extend(r for cells in markup.table_rows(table) if (r := _row(cells)) and r.symbol)
    if not rows:
        return None
    return Page(doc, WIN32_MD, "en", "", rows=rows, table=True, catalog=True)


def _intro(page: Page, section: markup.Section) -> None:
    texts = [t for b in markup.blocks(section) if (t := b.text())]
    if texts and deprecation(texts[0]):
        page.deprecated = deprecation(texts[0])
        texts = texts[1:]
    if texts:
        page.summary = summary_from(texts[0])


def _syntax(page: Page, section: markup.Section) -> None:
    for code in markup.fences(section):
        found = parse_signature(code.split("\n"), page.method.split("::")[-1])
        if found:
            page.return_type, page.params = found
            page.signature = True
            return


def _params(page: Page, section: markup.Section) -> None:
    """`<dl> <dt> *name* [in] </dt> <dd> description </dd> </dl>`."""
    dom = section.dom()
    by_name = {p.name: p for p in page.params}
    for dt in dom.iter("dt"):
        term = unescape_md(dt.text())
        match = re.match(rf"^\*?({IDENT})\*?\s*(\[[^\]]*\])?", term)
        dd = _next_dd(dom, dt)
        if not match or dd is None:
            continue
        name, doc = match.group(1), dd.text()
        direction, optional, retval = directions(match.group(2) or "")
        param = by_name.get(name)
        if param is None:
            param = ParamDoc(name, direction, type_from_prose(doc), optional, retval)
            page.params.append(param)
            by_name[name] = param
        param.direction = param.direction or direction
        param.optional = param.optional or optional
        param.retval = param.retval or retval
        param.doc = doc
        param.nullable = nullable_from(doc, name)
        param.special = special_values(markup.bold_words(dd), param.type)
        page.prose_codes.extend((s, f"parameter {name}") for s in codes_named(doc))


def _next_dd(root: markup.Node, dt: markup.Node) -> markup.Node | None:
    """The `<dd>` that follows a `<dt>` in document order (markdown splits them apart)."""
    seen = False
    for node in _walk(root):
        if node is dt:
            seen = True
        elif seen and node.tag == "dd":
            return node
        elif seen and node.tag == "dt":
            return None
    return None


def _walk(node: markup.Node):
    for child in node.children:
        if isinstance(child, markup.Node):
            yield child
            yield from _walk(child)


def _returns(page: Page, section: markup.Section) -> None:
    dom = section.dom()
    table = dom.first("table")
    prose = " ".join(p.text() for p in dom.kids("p"))
    page.also = also_from(prose)
    if table is not None:
        page.table = True
        page.rows = [row for cells in markup.table_rows(table) if (row := _row(cells))]
    if not page.rows:
        page.rows = prose_rows(prose)


def _row(cells: list[markup.Node]) -> Row | None:
    """`<td><dl><dt><b>SYMBOL</b></dt><dt>0x…L</dt></dl></td><td>description</td>`."""
    if len(cells) < 2 or cells[0].tag == "th":
        return None
    return code_row(markup.cell_texts(cells))


def _remarks(page: Page, section: markup.Section) -> None:
    dom = section.dom()
    text = dom.text()
    delivered = remark_rows(" ".join(p.text() for p in dom.kids("p")))
    table = dom.first("table")
    if table is not None and DELIVERED.search(text):
        for row in (_row(cells) for cells in markup.table_rows(table)):
            if row and row.symbol:
                row.via, row.origin = "completion", "remarks"
                delivered.append(row)
    known = {r.symbol for r in page.rows}
    page.rows.extend(r for r in delivered if r.symbol not in known)
    page.prose_codes.extend((s, "remarks") for s in codes_named(text)
                            if s not in known and all(r.symbol != s for r in delivered))


def _requirements(page: Page, section: markup.Section) -> None:
    table = section.dom().first("table")
    for cells in markup.table_rows(table) if table is not None else []:
        if len(cells) < 2 or cells[0].tag == "th":
            continue
        found = requirement(cells[0].text(), cells[1].text())
        if found:
            page.requirements[found[0]] = found[1]
