"""The catalog: every spec, domain and the code table found under the spec paths.

One load per run: files are read, checked against their JSON Schemas, built into models and
cross-checked (codes, CEL, domains) before a single provider call is made, so a spec error is
exit 2 with every problem listed, not a failure in the middle of a run.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from conformance.errors import UsageError
from conformance.spec.catalog_checks import catalog_problems
from conformance.spec.codes import CodeTable, code_table_from
from conformance.spec.crosscheck import spec_problems
from conformance.spec.domain import Domain, domain_from
from conformance.spec.model import Spec, spec_from
from conformance.spec.paths import default_specs_dir, specs_root
from conformance.spec.schema import schema_problems
from conformance.spec.source import Document, Problem, SourceError, load_file

T = TypeVar("T")


@dataclass
class Catalog:
    """Every spec (by id), domain (by family) and the code table of one run, with the specs
    root they were read from."""

    specs: dict[str, Spec] = field(default_factory=dict)
    domains: dict[str, Domain] = field(default_factory=dict)
    codes: CodeTable = field(default_factory=lambda: CodeTable({}, {}))
    root: Path | None = None

    def domain_of(self, spec: Spec) -> Domain:
        return self.domains[spec.family]

    def of_families(self, families: list[str] | None) -> Catalog:
        """The catalog of these families only (`--family`); UsageError names an unknown one."""
        if not families:
            return self
        unknown = [f for f in families if f not in self.domains]
        if unknown:
            raise UsageError(
                f"--family {unknown[0]}: no such family; the catalog has "
                f"{', '.join(sorted(self.domains))}"
            )
        return Catalog(
            {k: s for k, s in self.specs.items() if s.family in families},
            {k: d for k, d in self.domains.items() if k in families},
            self.codes,
            self.root,
        )


def spec_files(paths: list[Path]) -> list[Path]:
    """The spec files under `paths`: folders searched, domains and the code table left out."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(
                p
                for p in sorted(path.rglob("*.yaml"))
                if "domains" not in p.relative_to(path).parts and p.name != "codes.yaml"
            )
        elif "domains" not in path.parts and path.name != "codes.yaml":
            out.append(path)
    return out


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection for a while. Loading and collecting build hundreds of
    thousands of long-lived objects and almost no cycles, so the collector's passes over the
    growing heap are a quarter of the time, for nothing; what garbage there is waits."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_catalog(paths: Sequence[str | Path] | None = None) -> Catalog:
    """Load and check specs; raise SourceError listing every problem found."""
    with gc_paused():
        return _load_catalog(paths)


def _load_catalog(paths: Sequence[str | Path] | None) -> Catalog:
    """Read the code table, every domain, then every spec; cross-check them all and raise
    one SourceError listing every problem."""
    targets = [Path(p) for p in (paths or [default_specs_dir()])]
    for t in targets:
        if not t.exists():
            raise SourceError([Problem(str(t), 1, "", "no such file or directory")])
    root = specs_root(targets[0].resolve() if targets[0].is_dir() else targets[0].resolve().parent)
    problems: list[Problem] = []
    catalog = Catalog(root=root)
    catalog.codes = _load(root / "codes.yaml", "codes", code_table_from, problems) or catalog.codes
    for file in sorted((root / "domains").glob("*.yaml")):
        domain = _load(file, "domain", domain_from, problems)
        if domain is not None:
            catalog.domains[domain.family] = domain
    for file in spec_files(targets):
        spec = _load(file, "spec", spec_from, problems)
        if spec is None:
            continue
        if spec.id in catalog.specs:
            problems.append(
                Problem(
                    str(file),
                    spec.line("id"),
                    "id",
                    f"duplicate spec id, also in {catalog.specs[spec.id].file}",
                )
            )
            continue
        catalog.specs[spec.id] = spec
    families: dict[Path, list[str]] = {}
    for spec in catalog.specs.values():
        problems.extend(
            spec_problems(
                spec, catalog.domains.get(spec.family), catalog.codes, families, catalog.specs
            )
        )
    problems.extend(catalog_problems(list(catalog.specs.values()), catalog.codes))
    if problems:
        raise SourceError(problems)
    return catalog


def _load(
    file: Path, kind: str, build: Callable[[Document], T], problems: list[Problem]
) -> T | None:
    """One file read, checked against its schema and built; None, with its problems added,
    when it cannot be."""
    try:
        doc = load_file(file)
        found = schema_problems(doc, kind)
        if found:
            problems.extend(found)
            return None
        return build(doc)
    except SourceError as exc:
        problems.extend(exc.problems)
        return None
