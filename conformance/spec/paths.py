"""Where the specs are: the bundled folder, and the root a spec file belongs to.

Both the catalog (which loads a folder) and the checks (which find the `domains/` and
`codes.yaml` beside a spec, and the JSON Schemas) need these answers, so they live here, below
both, and the imports flow one way: catalog, then the checks, then this module.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_SPECS = Path(__file__).resolve().parents[2] / "specs"


def default_specs_dir() -> Path:
    """./specs of a checkout, else the specs installed with the package."""
    if (DEFAULT_SPECS / "codes.yaml").is_file():
        return DEFAULT_SPECS
    import conformance_specs  # installed data package

    return Path(conformance_specs.__file__).parent


def is_specs_root(folder: Path) -> bool:
    """A specs root holds `codes.yaml` and `domains/`."""
    return (folder / "codes.yaml").is_file() and (folder / "domains").is_dir()


def specs_root(path: Path) -> Path:
    """The specs root at or above the folder `path`, else the bundled specs: a spec is read
    with the code table and domains of the tree it sits in."""
    for candidate in [path, *path.parents]:
        if is_specs_root(candidate):
            return candidate
    return default_specs_dir()


def specs_root_of(file: str | Path) -> Path:
    """The specs root above a spec file, as the catalog finds it for the file's folder."""
    return specs_root(Path(file).resolve().parent)
