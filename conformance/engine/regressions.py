"""Regressions: what exploration found, saved so that every later run replays it.

A gate gives the same verdict every time, so random draws never decide it; but what they find
must not be lost. Every failure exploration finds (already shrunk) is written as one YAML file
in a folder that stays between runs (`.conformance/regressions/` beside where the run starts,
or `--regressions DIR`; keep it in the repository beside the baseline), in the reproduction's
scenario shape, with the check it fails (the planned check of the kind that found it), the
provider, the seed and the date. Every later run replays the regressions of each selected
check first, under that check's own name: the failure fails every run until it is fixed, then
is reported fixed, and stays until someone removes the file.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, cast

import yaml

from conformance.errors import UsageError

if TYPE_CHECKING:
    from conformance.engine.repro import Repro, Saved

DEFAULT_FOLDER = Path(".conformance") / "regressions"
_SLUG = re.compile(r"[^a-z0-9]+")


class RegressionError(UsageError):
    """A regression file cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Regression:
    path: Path
    check: str  # the planned check it is replayed under
    repro: Saved  # the whole file: check, method, given, call/expect or calls, found, ...
    provider: str = ""
    seed: int | None = None
    found: str = ""
    message: str = ""

    @property
    def name(self) -> str:
        return self.path.name

    def describe(self) -> str:
        seed = f" with --seed {self.seed}" if self.seed is not None else ""
        return f"regression {self.name} (found {self.found or 'earlier'} by exploration{seed})"


def load(folder: Path) -> list[Regression]:
    """Every regression in `folder` (none when it does not exist), in name order."""
    if not folder.is_dir():
        return []
    return [load_one(path) for path in sorted(folder.glob("*.yaml"))]


def load_one(path: Path) -> Regression:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RegressionError(f"{path}: cannot read the regression: {exc}") from None
    if not isinstance(data, dict):
        raise RegressionError(f"{path}: not a regression (a YAML map is expected)")
    check = data.get("check")
    if not isinstance(check, str) or check.count("::") < 2:
        raise RegressionError(
            f"{path}: `check` must name the check it is replayed under "
            "(<method or family>::<kind>::<case>)"
        )
    if not ("call" in data or "calls" in data):
        raise RegressionError(f"{path}: a regression needs `call` (one call) or `calls`")
    seed = data.get("seed")
    return Regression(
        path,
        check,
        cast("Saved", data),  # (checked for `call` or `calls`, as a reproduction is)
        str(data.get("provider") or ""),
        seed if isinstance(seed, int) else None,
        str(data.get("found") or ""),
        str(data.get("message") or ""),
    )


def by_check(regressions: list[Regression]) -> dict[str, list[Regression]]:
    out: dict[str, list[Regression]] = {}
    for regression in regressions:
        out.setdefault(regression.check, []).append(regression)
    return out


def save(
    folder: Path, check: str, repro: Repro, provider: str, seed: int | None, message: str
) -> Path:
    """Write one regression (the same case twice is one file) and return its path."""
    fields: Mapping[str, object] = repro
    shape = {k: fields[k] for k in ("method", "given", "call", "calls", "expect") if k in fields}
    digest = hashlib.sha256(
        json.dumps([check, shape], sort_keys=True, default=str, ensure_ascii=False).encode("utf-8")
    ).hexdigest()[:10]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_SLUG.sub('-', check.lower()).strip('-')}-{digest}.yaml"
    if path.exists():
        return path
    data = {
        "check": check,
        **shape,
        "provider": provider,
        "seed": seed,
        "found": date.today().isoformat(),
        "message": message,
    }
    header = (
        f"# Found by exploration; every run replays it under {check} until it passes.\n"
        "# Keep this file with the baseline; remove it to forget the case.\n"
    )
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(
        header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    tmp.replace(path)
    return path
