"""What the commands load before they do anything: the catalog (all of it, or some families),
the provider, and the pytest arguments that select a run's checks; a failure is raised as the
ConformanceError that says it and its exit status (`cli.main` prints it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def pytest_selection(catalog: Any, keyword: str | None, verbose: bool = False) -> list[str]:
    """The pytest arguments that collect a catalog's checks (and select them with -k)."""
    families = {s.family for s in catalog.specs.values()}
    # The family files first: a family's planned sequences are the longest checks, and with
    # -n (files handed out in this order, --no-loadscope-reorder) they start at once on
    # different workers instead of queuing behind each other at the end.
    files = sorted(d.file for d in catalog.domains.values() if d.family in families) + sorted(
        {s.file for s in catalog.specs.values()}
    )
    pytest_args = [
        *collection_args(files),
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        "-p",
        "no:benchmark",
        "--rootdir",
        str(catalog.root or Path.cwd()),
        "-c",
        os.devnull,
        "-o",
        "python_files=",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    ]
    pytest_args += ["-v", "--no-header", "-rN"] if verbose else ["-p", "no:terminal"]
    if keyword:
        pytest_args += ["-k", keyword]
    return pytest_args


def unavailable_reason(exc: Exception, in_worker: bool) -> str:
    """Why the provider is unavailable; for a provider in a worker process, the reason the
    worker gave (not the worker's command line)."""
    refused = getattr(exc, "refused", None)
    if in_worker and refused:
        return str(refused).removeprefix("provider unavailable: ")
    return str(exc)


def collection_args(files: list[str]) -> list[str]:
    """What pytest is asked to collect: the folders holding the run's files where every YAML
    file in a folder belongs to the run, else the files. (pytest resolves each argument
    through the whole collection tree: a thousand file arguments cost minutes.)"""
    by_folder: dict[Path, set[Path]] = {}
    for file in files:
        path = Path(file).resolve()
        by_folder.setdefault(path.parent, set()).add(path)
    args: list[str] = []
    for folder, wanted in by_folder.items():  # in the order the files were given
        present = {p.resolve() for p in folder.glob("*.yaml")}
        subfolders = any(p.is_dir() for p in folder.iterdir())
        if present == wanted and not subfolders and folder.name != "domains":
            args.append(str(folder))
        else:
            args.extend(str(p) for p in sorted(wanted))
    return args


def catalog_and_provider(
    specs: list[str] | None, families: list[str] | None, provider: str, token_file: str | None
) -> tuple[Any, Any]:
    """The catalog and the loaded provider of a command that replays or probes (SourceError,
    UsageError or ProviderUnavailable say why not, with their exit status)."""
    from conformance.provider import load

    catalog = selected_catalog(specs, families)
    return catalog, load(provider, token_file=token_file)


def selected_catalog(specs: list[str] | None, families: list[str] | None = None) -> Any:
    """The catalog (of `families` only, when given); SourceError names every problem
    (`file:line: path: message`), UsageError an unknown family."""
    from conformance.spec.catalog import load_catalog

    return load_catalog(specs).of_families(families)
