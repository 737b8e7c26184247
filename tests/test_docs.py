"""The documentation is tested: its code runs, its specs validate, its links resolve.

- Every ```python block of docs/*.md runs, in page order, in one empty folder per page (the
  folder is also on sys.path). A block preceded by `<!-- file: NAME.py -->` is saved as NAME.py
  for later blocks (and for `--provider NAME.py:Class`); every block runs as a script of its
  own, so it must import what it uses.
- Every ```yaml block that is a document of this project must load: a spec (`spec: 1`) or a
  domain (`domain: 1`) in a copy of the bundled specs, a baseline (`baseline: 1`), or a
  reproduction (`call`/`calls`, which must pass against the reference provider). A block
  preceded by `<!-- fragment -->` is a deliberate excerpt and is skipped; an unmarked excerpt of
  a spec (rules, scenarios, effects, ...) fails. Other YAML (a backend's config file) is skipped.
- Every relative link of docs/*.md, ARCHITECTURE.md and README.md names an existing file (and,
  for a `#fragment` into Markdown, an existing heading).
- The pages name what they document: every check kind, every field of the spec schema, every
  step, fault and collection of the bundled domains.
"""

from __future__ import annotations

import contextlib
import gc
import io
import itertools
import json
import re
import runpy
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conformance_providers.reference import ReferenceProvider
from markdown_it import MarkdownIt
from markdown_it.token import Token

from conformance.engine.kinds import KINDS
from conformance.engine.replay import load_repro, replay
from conformance.engine.verdict import Settings
from conformance.reporting.baseline import load_baseline
from conformance.spec import catalog as catalog_module
from conformance.spec.catalog import load_catalog
from conformance.spec.paths import default_specs_dir

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
LINKED = [*PAGES, ROOT / "ARCHITECTURE.md", ROOT / "README.md"]
FRAGMENT = "<!-- fragment -->"
FILE_MARKER = re.compile(r"^<!--\s*file:\s*([A-Za-z_][A-Za-z0-9_]*\.py)\s*-->$")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # https:, mailto:, ...

_MARKDOWN = MarkdownIt("commonmark").enable("table")


@dataclass(frozen=True)
class Block:
    """One fenced block, where it is, and the HTML comment right above it (if any)."""

    page: Path
    line: int
    lang: str
    code: str
    marker: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def tokens(page: Path) -> list[Token]:
    return _MARKDOWN.parse(page.read_text(encoding="utf-8"))


def blocks(page: Path) -> list[Block]:
    found, marker = [], ""
    for token in tokens(page):
        if token.type == "html_block":
            marker = token.content.strip()
            continue
        if token.type == "fence" and token.map:
            lang = token.info.split()[0] if token.info.strip() else ""
            found.append(Block(page, token.map[0] + 1, lang, token.content, marker))
        marker = ""
    return found


def all_blocks(lang: str) -> list[Block]:
    return [b for page in PAGES for b in blocks(page) if b.lang == lang]


# -- python blocks ------------------------------------------------------------------------------

PYTHON_PAGES = [p for p in PAGES if any(b.lang == "python" for b in blocks(p))]


# Harness bugs the pages run into, by what the run prints: a block that fails with one of
# these is reported as an expected failure naming the bug, and the page's later blocks still
# run. Remove an entry once the bug is fixed (the test then passes without it).
KNOWN_BUGS = {
    "ReproError: the provider does not support this reproduction": "a scenario with `calls` "
    "that meets Unsupported ends in an error, not in not-applicable "
    "(DESIGN.md: Unsupported makes a check not applicable; plugin.check_sequence)",
}


@pytest.fixture(scope="module")
def bundled_catalog_parsed_once() -> Iterator[None]:
    """The bundled catalog is read-only: parse it once for all pages, not once per command.

    Only `load_catalog()` of the bundled specs is shared; a block that loads other paths (a
    draft it just edited) gets a fresh load every time.
    """
    real = catalog_module.load_catalog
    shared: list[Any] = []

    def load_catalog(paths: list[str | Path] | None = None) -> Any:
        if paths:
            return real(paths)
        if not shared:
            shared.append(real())
        return shared[0]

    gc.freeze()  # each in-process run ends with full gc passes: keep them to its own objects
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(catalog_module, "load_catalog", load_catalog)
        yield
    gc.unfreeze()


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=[p.name for p in PYTHON_PAGES])
@pytest.mark.usefixtures("bundled_catalog_parsed_once")
def test_python_blocks_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    known: list[str] = []
    try:
        for number, block in enumerate(b for b in blocks(page) if b.lang == "python"):
            named = FILE_MARKER.match(block.marker)
            path = tmp_path / (named.group(1) if named else f"block_{number}.py")
            path.write_text(block.code, encoding="utf-8")
            printed = io.StringIO()
            try:
                with contextlib.redirect_stdout(printed):
                    runpy.run_path(str(path), run_name=path.stem if named else "__main__")
            except BaseException as exc:
                bug = next(
                    (why for sign, why in KNOWN_BUGS.items() if sign in printed.getvalue()), None
                )
                if bug is None:
                    raise AssertionError(
                        f"the block at {block.where} fails: "
                        f"{type(exc).__name__}: {exc}\n{printed.getvalue()}"
                    ) from exc
                known.append(f"{block.where}: {bug}")
            finally:
                sys.stdout.write(printed.getvalue())
    finally:
        for name in set(sys.modules) - before:  # modules the blocks wrote and imported
            if str(getattr(sys.modules[name], "__file__", "") or "").startswith(str(tmp_path)):
                del sys.modules[name]
    if known:
        pytest.xfail("known harness bug: " + "; ".join(known))


# -- yaml blocks --------------------------------------------------------------------------------

YAML_BLOCKS = [b for b in all_blocks("yaml") if b.marker != FRAGMENT]


def _specs_copy(tmp_path: Path) -> Path:
    root = tmp_path / "specs"
    shutil.copytree(default_specs_dir(), root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _check_spec(data: dict[str, Any], block: Block, tmp_path: Path) -> None:
    """The spec replaces the bundled one of the same id (if any) in a copy of the specs."""
    root = _specs_copy(tmp_path)
    for file in root.rglob("*.yaml"):
        text = yaml.safe_load(file.read_text(encoding="utf-8"))
        if isinstance(text, dict) and text.get("id") == data["id"]:
            file.unlink()
    (root / "docs-example.yaml").write_text(block.code, encoding="utf-8")
    catalog = load_catalog([root])
    assert data["id"] in catalog.specs


def _check_domain(data: dict[str, Any], block: Block, tmp_path: Path) -> None:
    root = _specs_copy(tmp_path)
    (root / "domains" / f"{data['family']}.yaml").write_text(block.code, encoding="utf-8")
    assert data["family"] in load_catalog([root]).domains


def _check_baseline(block: Block, tmp_path: Path) -> None:
    file = tmp_path / "baseline.yaml"
    file.write_text(block.code, encoding="utf-8")
    load_baseline(file)


def _check_repro(block: Block, tmp_path: Path) -> None:
    """A reproduction names documented behaviour, so the reference provider passes it."""
    file = tmp_path / "repro.yaml"
    file.write_text(block.code, encoding="utf-8")
    result = replay(load_repro(file), load_catalog(), ReferenceProvider(), Settings())
    assert result.passed, result.message


def _spec_words() -> set[str]:
    """Keys that mark YAML as (part of) a spec: its top-level fields, a rule's, a scenario's."""
    schema = json.loads(
        (default_specs_dir() / "schema" / "spec.schema.json").read_text(encoding="utf-8")
    )
    defs = schema["$defs"]
    return {*schema["properties"], *defs["rule"]["properties"], *defs["scenario"]["properties"]}


def _keys(data: Any) -> set[str]:
    if isinstance(data, dict):
        return {str(k) for k in data}
    if isinstance(data, list):
        return {str(k) for item in data if isinstance(item, dict) for k in item}
    return set()


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=[b.where for b in YAML_BLOCKS])
def test_yaml_blocks_are_whole_valid_documents(block: Block, tmp_path: Path) -> None:
    data = yaml.safe_load(block.code)
    if isinstance(data, dict) and data.get("spec") == 1:
        _check_spec(data, block, tmp_path)
    elif isinstance(data, dict) and data.get("domain") == 1:
        _check_domain(data, block, tmp_path)
    elif isinstance(data, dict) and data.get("baseline") == 1:
        _check_baseline(block, tmp_path)
    elif isinstance(data, dict) and ("call" in data or "calls" in data):
        _check_repro(block, tmp_path)
    elif _keys(data) & _spec_words():
        pytest.fail(
            f"{block.where}: part of a spec, not a whole one; put {FRAGMENT} on the "
            "line above it, or show the whole spec"
        )
    else:
        pytest.skip(
            f"{block.where}: not a document of this project (spec, domain, baseline, "
            "reproduction); nothing to validate"
        )


# -- links --------------------------------------------------------------------------------------


def _inline_text(token: Token) -> str:
    return "".join(c.content for c in token.children or [] if c.type in ("text", "code_inline"))


def headings(page: Path) -> list[str]:
    """The text of every heading, in order (inline code without its backticks)."""
    return [
        _inline_text(inline)
        for opening, inline in itertools.pairwise(tokens(page))
        if opening.type == "heading_open"
    ]


def anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to dashes, -1 for repeats."""
    seen: dict[str, int] = {}
    out = set()
    for heading in headings(page):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def links(page: Path) -> Iterator[tuple[int, str]]:
    for token in tokens(page):
        for child in token.children or []:
            if child.type == "link_open" and token.map:
                yield token.map[0] + 1, str(child.attrs.get("href", ""))


LINKS = [
    (page, line, href)
    for page in LINKED
    if page.is_file()
    for line, href in links(page)
    if not EXTERNAL.match(href)
]


@pytest.mark.parametrize(
    ("page", "line", "href"), LINKS, ids=[f"{p.relative_to(ROOT)}:{n}:{h}" for p, n, h in LINKS]
)
def test_relative_links_resolve(page: Path, line: int, href: str) -> None:
    path, _, fragment = href.partition("#")
    target = (page.parent / path).resolve() if path else page
    assert target.exists(), f"{page.relative_to(ROOT)}:{line}: {href} does not exist"
    if fragment and target.suffix == ".md":
        assert fragment in anchors(target), (
            f"{page.relative_to(ROOT)}:{line}: {href}: no heading #{fragment} in {target.name}"
        )


# -- the pages name what they document ----------------------------------------------------------


def _text(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def test_every_check_kind_has_a_section_in_checks_md() -> None:
    present = set(headings(DOCS / "checks.md"))
    missing = [kind for kind in KINDS if kind not in present]
    assert not missing, f"docs/checks.md has no heading for the check kinds {missing}"


def _schema_fields(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        yield from node.get("properties", {})
        for value in node.values():
            yield from _schema_fields(value)
    elif isinstance(node, list):
        for value in node:
            yield from _schema_fields(value)


def test_the_spec_guide_names_every_field_of_the_schema() -> None:
    schema = json.loads(
        (default_specs_dir() / "schema" / "spec.schema.json").read_text(encoding="utf-8")
    )
    text = _text("writing-a-spec.md")
    missing = sorted({f for f in _schema_fields(schema) if f"`{f}`" not in text})
    assert not missing, f"docs/writing-a-spec.md does not explain the spec fields {missing}"


def test_the_provider_guide_names_every_step_fault_and_collection() -> None:
    text = _text("writing-a-provider.md")
    missing = sorted(
        {
            name
            for domain in load_catalog().domains.values()
            for name in (*domain.steps(), *domain.faults, *domain.collections)
            if f"`{name}`" not in text
        }
    )
    assert not missing, f"docs/writing-a-provider.md does not list {missing}"
