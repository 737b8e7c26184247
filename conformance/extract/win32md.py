"""win32 markdown source (MicrosoftDocs/win32): front matter, a Syntax block, pipe tables.

The return table is a markdown pipe table whose code cell holds inline HTML around markdown:
`<dl> <dt>**S\\_OK**</dt> <dt>0</dt> </dl>`; markdown-it renders it and html.parser reads it,
so the escaped underscores come out as plain ones. Remarks may name a code delivered elsewhere
(an IVMTask's Error property); the Requirements table may carry the interface's IID.
"""

from __future__ import annotations

import re

from conformance.extract import markup, mentions
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
    deprecation,
    directions,
    finish,
    nullable_from,
    parse_signature,
    remark_rows,
    requirement,
    special_values,
    summary_from,
    type_from_prose,
    unescape_md,
)

_SECTION_KEYS = {
    "syntax": "syntax",
    "parameters": "parameters",
    "return value": "returns",
    "error codes": "returns",
    "remarks": "remarks",
    "requirements": "requirements",
}


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
            raise PageError(
                doc,
                f"{title!r} is not a method page and lists no codes: nothing to extract",
                skipped=True,
            ) from None
        raise exc from None
    named = {
        _SECTION_KEYS[s.title.lower()]: s
        for s in secs
        if s.level == 2 and s.title.lower() in _SECTION_KEYS
    }
    if method.endswith("()") and "syntax" in named:  # a property: the accessor is the method
        method = _accessor(method[:-2], named["syntax"], doc)
    page = Page(doc, WIN32_MD, "en", method)
    intro = next((s for s in secs if s.level == 1), None)
    description = markup.flow(intro.dom()) if intro is not None else []
    _intro(page, description)
    if "syntax" in named:
        _syntax(page, named["syntax"])
    said_in_params = _params(page, named["parameters"]) if "parameters" in named else []
    if "returns" not in named:
        catalog = _catalog(secs, doc)
        if catalog is not None:
            return catalog
        if method.split("::")[-1].startswith(("get_", "put_")):
            raise PageError(
                doc,
                f"the property {method} documents no error codes: nothing to extract",
                skipped=True,
            )
        raise PageError(doc, "no `## Return value` or `## Error codes` section (truncated?)")
    _returns(page, named["returns"])
    if "remarks" in named:
        _remarks(page, named["remarks"])
    for name, blocks in said_in_params:
        mentions.take_said(
            page, blocks, "parameters", implicit_subject=True, label=f"parameter {name}"
        )
    mentions.take_said(page, description, "description")
    if "requirements" in named:
        _requirements(page, named["requirements"])
    locations = [str(x) for x in meta.get("api_location") or [] if isinstance(x, str)]
    page.header = page.header or next((x for x in locations if x.lower().endswith(".h")), None)
    page.dll = page.dll or next((x for x in locations if x.lower().endswith(".dll")), None)
    if not page.summary and isinstance(meta.get("description"), str):
        page.summary = summary_from(meta["description"])
    return finish(page)


_TITLE = re.compile(
    rf"^({IDENT}(?:(?:::|\.){IDENT})?)(?:\s+\([^)]*\))?\s+"
    r"(method|function|property)\b(?:\s+of\s+the\s+(\w+)\s+class\b)?"
)


def _method_id(secs: list[markup.Section], meta: dict, doc: str) -> str:
    """`# IVMGuestOS::Logoff method`, `# X.Y method`, `# DecryptMessage (Schannel) function`,
    `# Lock method of the Win32_EncryptableVolume class`; else front matter `api_name`."""
    title = unescape_md(next((s.title for s in secs if s.level == 1), ""))
    match = _TITLE.match(title)
    if match:
        name = match.group(1).replace(".", "::")
        if match.group(3) and "::" not in name:
            name = f"{match.group(3)}::{name}"
        return name + ("()" if match.group(2) == "property" else "")
    if title and re.match(rf"^{IDENT}\s+(?:interface|structure|enumeration|property)\b", title):
        raise PageError(
            doc, f"a page about {title!r}, not a method: nothing to extract", skipped=True
        )
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
    rows: list[Row] = []
    for section in secs:
        for table in section.dom().iter("table"):
            rows.extend(r for cells in markup.table_rows(table) if (r := _row(cells)) and r.symbol)
    if not rows:
        return None
    return Page(doc, WIN32_MD, "en", "", rows=rows, table=True, catalog=True)


def _intro(page: Page, blocks: list[markup.Block]) -> None:
    texts = [t for b in blocks if (t := mentions.block_text(b))]
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


def _params(page: Page, section: markup.Section) -> list[tuple[str, list[markup.Block]]]:
    """`<dl> <dt> *name* [in] </dt> <dd> description </dd> </dl>`; returns each parameter's
    text as blocks, read for codes once the Return value section has been."""
    dom = section.dom()
    said: list[tuple[str, list[markup.Block]]] = []
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
        said.append((name, markup.flow(dd)))
    return said


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
    """Rows from the section's tables, lists and prose, in page order (see `mentions`)."""
    blocks = markup.flow(section.dom())
    page.also = also_from(" ".join(b.text for b in blocks if b.kind == "prose"))
    page.table = any(b.kind == "row" for b in blocks)
    page.rows = mentions.returns_rows(blocks, page.lang)


def _row(cells: list[markup.Node]) -> Row | None:
    """`<td><dl><dt><b>SYMBOL</b></dt><dt>0x…L</dt></dl></td><td>description</td>`."""
    if len(cells) < 2 or cells[0].tag == "th":
        return None
    return code_row(markup.cell_texts(cells))


def _remarks(page: Page, section: markup.Section) -> None:
    dom = section.dom()
    text = dom.text()
    blocks = markup.flow(dom)
    delivered = remark_rows(" ".join(b.text for b in blocks if b.kind == "prose"))
    table = dom.first("table")
    if table is not None and DELIVERED.search(text):
        for row in (_row(cells) for cells in markup.table_rows(table)):
            if row and row.symbol:
                row.via, row.origin, row.found = "completion", "remarks", "remarks"
                delivered.append(row)
    known = {r.symbol for r in page.rows}
    page.rows.extend(r for r in delivered if r.symbol not in known)
    mentions.take_said(
        page, [b for b in blocks if b.kind != "row"] if delivered else blocks, "remarks"
    )


def _requirements(page: Page, section: markup.Section) -> None:
    table = section.dom().first("table")
    for cells in markup.table_rows(table) if table is not None else []:
        if len(cells) < 2 or cells[0].tag == "th":
            continue
        found = requirement(cells[0].text(), cells[1].text())
        if found:
            page.requirements[found[0]] = found[1]
