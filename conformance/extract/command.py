"""`conformance extract PAGE... --out DIR`: read the pages, group them by method, merge each
group into one spec draft, and write the drafts beside what a person already wrote."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from conformance.errors import EXIT_FAILS, EXIT_OK, EXIT_USAGE
from conformance.extract.formats import read_page
from conformance.extract.knowledge import Knowledge, load_knowledge
from conformance.extract.merge import ExtractedSpec, merge
from conformance.extract.page import Page, PageError
from conformance.extract.resolve import CodePages, Resolver
from conformance.extract.roundtrip import target_path, write

__all__ = [
    "ExtractedSpec",
    "Extraction",
    "PageError",
    "extract",
    "extract_pages",
    "main",
    "write_specs",
]


@dataclass
class Extraction:
    """Everything one run produced: specs, and per page what went wrong or was set aside."""

    specs: list[ExtractedSpec] = field(default_factory=list)
    errors: list[PageError] = field(default_factory=list)
    skipped: list[PageError] = field(default_factory=list)
    catalogs: list[Page] = field(default_factory=list)
    knowledge: Knowledge | None = None
    resolver: Resolver | None = None


def default_specs_dir() -> Path | None:
    """The bundled specs, whose codes name what pages strip (None if not installed)."""
    try:
        from conformance.spec.paths import default_specs_dir as bundled

        return bundled()
    except ImportError:
        return None


def extract(
    paths: Iterable[str | Path],
    existing_specs_dir: str | Path | None = None,
    code_pages: Iterable[str | Path] = (),
    metadata: bool = True,
) -> Extraction:
    """Read, group and merge pages; a page that cannot be read is an error, not an exception.

    Values a page leaves out are resolved from win32metadata (unless `metadata` is False),
    what the specs know, then the code pages of codes.yaml and `code_pages` (see resolve)."""
    knowledge = load_knowledge(existing_specs_dir)
    resolver = Resolver(
        knowledge, CodePages(knowledge.code_pages + [Path(p) for p in code_pages]), metadata
    )
    result = Extraction(knowledge=knowledge, resolver=resolver)
    groups: dict[str, list[Page]] = {}
    for path in paths:
        try:
            page = read_page(path)
        except PageError as exc:
            (result.skipped if exc.skipped else result.errors).append(exc)
            continue
        if page.catalog:
            result.catalogs.append(page)
        else:
            groups.setdefault(page.method, []).append(page)
    knowledge.learn_pages(result.catalogs + [p for g in groups.values() for p in g])
    result.specs = [merge(group, knowledge, resolver) for group in groups.values()]
    return result


def extract_pages(
    paths: Iterable[str | Path], existing_specs_dir: str | Path | None = None
) -> list[ExtractedSpec]:
    """One spec per method found in `paths` (unreadable pages are left out: see `extract`)."""
    return extract(paths, existing_specs_dir).specs


def write_specs(
    specs: list[ExtractedSpec], out_dir: str | Path, existing_specs_dir: str | Path | None = None
) -> list[ExtractedSpec]:
    """Write each spec under `out_dir`, merging into the existing spec of the same method."""
    out = Path(out_dir)
    root = Path(existing_specs_dir) if existing_specs_dir else None
    known = load_knowledge(root) if root else Knowledge()
    for spec in specs:
        existing = known.specs.get(spec.id)
        base = existing.file if existing else None
        target = target_path(spec, out, root, base)
        spec.changes = write(spec, target, base)
        spec.path = str(target)
    return specs


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    """`conformance extract`: 0 done, 1 a page failed or something is left unnamed, 2 usage."""
    parser = argparse.ArgumentParser(
        prog="conformance extract",
        description=(
            "Draft specs from Windows API reference pages (sdk-api or win32 markdown source, "
            "rendered English or localized text)."
        ),
    )
    parser.add_argument("pages", nargs="+", help="page files (one method may span several)")
    parser.add_argument("--out", required=True, help="folder to write specs into")
    parser.add_argument(
        "--specs",
        help="existing specs: name stripped symbols, keep "
        "hand-written rules (default: the bundled specs)",
    )
    parser.add_argument("--no-specs", action="store_true", help="use no existing specs")
    parser.add_argument(
        "--codes",
        action="append",
        default=[],
        metavar="FILE",
        help="a page listing codes with their values (a family's code page), "
        "for symbols the pages name without one; may be repeated",
    )
    args = parser.parse_args(argv)
    specs_dir = None if args.no_specs else (Path(args.specs) if args.specs else default_specs_dir())
    if specs_dir is not None and not (specs_dir / "codes.yaml").is_file():
        print(f"error: {specs_dir} is not a specs folder (no codes.yaml)", file=sys.stderr)
        return EXIT_USAGE
    missing = [c for c in args.codes if not Path(c).is_file()]
    if missing:
        print(f"error: --codes {missing[0]}: no such file", file=sys.stderr)
        return EXIT_USAGE
    result = extract(args.pages, specs_dir, args.codes)
    try:
        write_specs(result.specs, args.out, specs_dir)
    except OSError as exc:
        print(f"error: cannot write to {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    return report(result)


def report(result: Extraction, out=None) -> int:
    out = out or sys.stdout
    for spec in result.specs:
        pages = ", ".join(f"{p.doc} ({p.format}, {p.lang})" for p in spec.pages)
        print(f"{spec.id}: from {pages} -> {spec.path}", file=out)
        for finding in spec.findings:
            print(
                f"  finding {finding.kind}{f' ({finding.code})' if finding.code else ''}: "
                f"{finding.message}",
                file=out,
            )
        for line in spec.unnamed:
            print(f"  unnamed: {line}", file=out)
        for line in spec.inferences:
            print(f"  inferred: {line}", file=out)
        for line in spec.confirm:
            print(f"  confirm: {line}", file=out)
        for line in spec.changes:
            print(f"  change: {line}", file=out)
    for page in result.catalogs:
        print(
            f"{page.doc}: a list of {len(page.rows)} codes (used to name codes and check values)",
            file=out,
        )
    for exc in result.skipped:
        print(f"skipped {exc}", file=out)
    for problem in result.resolver.pages.problems if result.resolver else []:
        print(f"warning: {problem}", file=out)
    for exc in result.errors:
        print(f"error: {exc}", file=out)
    findings = sum(len(s.findings) for s in result.specs)
    unnamed = sum(len(s.unnamed) for s in result.specs)
    print(
        f"{len(result.specs)} specs, {findings} findings, {unnamed} things left unnamed, "
        f"{len(result.errors)} pages unreadable",
        file=out,
    )
    return EXIT_FAILS if result.errors or unnamed else EXIT_OK
