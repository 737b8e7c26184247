"""Markdown and HTML read with real parsers: markdown-it-py for structure, html.parser for HTML.

sdk-api sources are HTML inside markdown; win32 sources are markdown with inline HTML. We
parse the block structure once (inline parsing off, which is most of markdown-it's cost), cut it
into sections at headings, and render to HTML only the sections a reader asks for; that HTML is
read into a small element tree. Indented code is disabled because the docs' own pipeline keeps
indented lines inside HTML tables as text, and so must we.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser

import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token

from conformance.extract.mentions import Block
from conformance.extract.page import PageError, squash

_BLOCKS = MarkdownIt("commonmark", {"html": True}).disable(["code", "inline"]).enable("table")
_FULL = MarkdownIt("commonmark", {"html": True}).disable("code").enable("table")
_VOID = frozenset({"br", "hr", "img", "input", "meta", "link", "col", "area", "base", "wbr"})
_BLOCK_TAGS = frozenset(
    {
        "p",
        "div",
        "br",
        "tr",
        "li",
        "dt",
        "dd",
        "dl",
        "table",
        "pre",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "ul",
        "ol",
        "blockquote",
        "td",
        "th",
    }
)
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# --------------------------------------------------------------------------- front matter


def front_matter(text: str, doc: str) -> tuple[dict, str]:
    """Split `---\\nYAML\\n---` from the body; a page without it has an empty one."""
    if not text.startswith("---\n"):
        return {}, text
    end = text.find("\n---", 3)
    if end < 0:
        raise PageError(doc, "front matter starts with --- but is never closed (truncated?)")
    try:
        data = _yaml(text[4:end])
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 2}" if mark else ""
        raise PageError(doc, f"front matter is not valid YAML{where}") from None
    body = text[end + 4 :]
    return (data if isinstance(data, dict) else {}), body.split("\n", 1)[1] if "\n" in body else ""


def _yaml(text: str) -> object:
    """Front matter as YAML; docs often indent list items with a tab, which YAML forbids."""
    try:
        return yaml.load(text, Loader=_SAFE_LOADER)
    except yaml.YAMLError:
        if "\t" not in text:
            raise
        return yaml.load(text.replace("\t", "  "), Loader=_SAFE_LOADER)


# --------------------------------------------------------------------------- markdown


@dataclass
class Section:
    level: int
    title: str
    tokens: list[Token] = field(default_factory=list)
    _dom: Node | None = field(default=None, repr=False, compare=False)

    def html(self) -> str:
        return render(self.tokens)

    def dom(self) -> Node:
        """The section's tree, parsed once: readers ask for it for facts and for codes."""
        if self._dom is None:
            self._dom = parse_html(self.html())
        return self._dom


_PADDING = re.compile(r"(?m)^(\|.*)$")
_SPACES = re.compile(r" {2,}|-{4,}")


def _unpad(line: re.Match[str]) -> str:
    """A pipe-table row without its alignment padding (cells are trimmed by GFM anyway)."""
    return _SPACES.sub(lambda m: " " if m.group(0)[0] == " " else "---", line.group(1))


def sections(body: str) -> list[Section]:
    """The page cut at every heading; text before the first heading is a level-0 section."""
    tokens = _BLOCKS.parse(_PADDING.sub(_unpad, body) if "|" in body else body)
    out = [Section(0, "")]
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.type == "heading_open":
            title = tokens[i + 1].content if i + 1 < len(tokens) else ""
            out.append(Section(int(tok.tag[1]), title.strip()))
            i += 3
            continue
        out[-1].tokens.append(tok)
        i += 1
    return out


def render(tokens: list[Token]) -> str:
    """HTML of block tokens whose inline content has not been parsed yet."""
    env: dict = {}
    for tok in tokens:
        if tok.type == "inline" and not tok.children:
            tok.children = []
            _FULL.inline.parse(tok.content, _FULL, env, tok.children)
            for child in tok.children:  # what markdown-it's text_join core rule does
                if child.type == "text_special":
                    child.type = "text"
    return _FULL.renderer.render(tokens, _FULL.options, env)


# --------------------------------------------------------------------------- HTML


@dataclass
class Node:
    tag: str
    attrs: dict[str, str | None] = field(default_factory=dict)
    children: list[Node | str] = field(default_factory=list)

    def iter(self, tag: str) -> Iterator[Node]:
        """Descendants with this tag, in document order."""
        for child in self.children:
            if isinstance(child, Node):
                if child.tag == tag:
                    yield child
                yield from child.iter(tag)

    def first(self, tag: str) -> Node | None:
        return next(self.iter(tag), None)

    def text(self) -> str:
        """All text, whitespace collapsed; block elements end a word."""
        parts: list[str] = []
        self._text(parts)
        return squash("".join(parts))

    def _text(self, parts: list[str]) -> None:
        for child in self.children:
            if isinstance(child, str):
                parts.append(child)
            else:
                child._text(parts)
                if child.tag in _BLOCK_TAGS:
                    parts.append(" ")


MAX_DEPTH = 200  # deeper elements are kept as siblings: their text stays, recursion stays bounded


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root")
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if tag not in _VOID and len(self.stack) < MAX_DEPTH:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse_html(html: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def table_rows(table: Node) -> list[list[Node]]:
    """The cells of each row of a table, header rows included."""
    rows = []
    for tr in table.iter("tr"):
        cells = [c for c in tr.children if isinstance(c, Node) and c.tag in ("td", "th")]
        if cells:
            rows.append(cells)
    return rows


def cell_texts(cells: list[Node]) -> list[str]:
    """Cell texts, a `<dl>` cell as its terms one per line (symbol, then value)."""
    out = []
    for cell in cells:
        terms = [dt.text() for dt in cell.iter("dt")]
        out.append("\n".join(terms) if terms else cell.text())
    return out


def bold_words(node: Node) -> list[str]:
    return [b.text() for tag in ("b", "strong") for b in node.iter(tag)]


def blocks(section: Section) -> list[Node]:
    """Each top-level block of a section (paragraph, HTML block, table, code) as a tree."""
    out: list[Node] = []
    group: list[Token] = []
    depth = 0
    for tok in section.tokens:
        group.append(tok)
        depth += tok.nesting
        if depth <= 0:
            out.append(parse_html(render(group)))
            group, depth = [], 0
    if group:
        out.append(parse_html(render(group)))
    return out


def fences(section: Section) -> list[str]:
    return [t.content for t in section.tokens if t.type == "fence"]


# --------------------------------------------------------------------------- a section's flow

_FLOW_BREAKS = frozenset(
    {"p", "div", "br", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "section", "hr", "center"}
)


def flow(node: Node) -> list[Block]:
    """A section as `Block`s in page order: table rows, list items, definitions, paragraphs.

    Inline markup (`<b>`, `<a>`, `<code>`) stays part of its paragraph; code blocks (`<pre>`)
    are left out, since a sample's `hr = E_FAIL;` documents nothing the method returns."""
    out: list[Block] = []
    text: list[str] = []

    def paragraph() -> None:
        joined = squash("".join(text))
        text.clear()
        if joined:
            out.append(Block("prose", joined))

    def walk(parent: Node) -> None:
        for child in parent.children:
            if isinstance(child, str):
                text.append(child)
                continue
            handler = _FLOW_HANDLERS.get(child.tag)
            if handler is not None:
                paragraph()
                out.extend(handler(child))
            elif child.tag in _FLOW_BREAKS:
                paragraph()
                walk(child)
                paragraph()
            else:
                walk(child)

    walk(node)
    paragraph()
    return out


def _table_blocks(table: Node) -> list[Block]:
    return [
        Block("row", cells=cell_texts(cells)) for cells in table_rows(table) if cells[0].tag != "th"
    ]


def _list_blocks(lst: Node) -> list[Block]:
    return [Block("item", li.text()) for li in lst.iter("li")]


def _definition_blocks(dl: Node) -> list[Block]:
    """`<dt>TERM</dt>... <dd>TEXT</dd>` pairs; consecutive terms are one (symbol, value)."""
    out: list[Block] = []
    terms: list[str] = []
    for child in dl.children:
        if not isinstance(child, Node):
            continue
        if child.tag == "dt":
            terms.append(child.text())
        elif child.tag == "dd":
            out.append(Block("item", child.text(), term="\n".join(terms)))
            terms = []
    if terms:
        out.append(Block("item", "", term="\n".join(terms)))
    return out


_FLOW_HANDLERS = {
    "table": _table_blocks,
    "ul": _list_blocks,
    "ol": _list_blocks,
    "dl": _definition_blocks,
    "pre": lambda node: [],
}
