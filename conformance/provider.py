"""The provider contract (stable): what an implementation under test offers the harness.

A provider is anything with the methods of `Provider`; subclassing it is optional. The
harness speaks to it only through this contract, so a simulator, a real Windows backend,
a vendor's package and a remote agent are interchangeable.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from conformance.errors import ConformanceError, ExitStatus, Status

ENTRY_POINT_GROUP = "conformance.providers"
CONTRACT = ("capabilities", "reset", "setup", "call", "observe", "close")
# Providers named by a scheme rather than a name, module or file: scheme -> the
# "module:function" that opens one (`function(spec, **options)`), imported only when a spec
# uses it, so that this contract imports nothing of the harness but its error root.
SCHEMES: dict[str, str] = {
    "remote+tcp://": "conformance.remote.client:open_remote",
    "remote+stdio:": "conformance.remote.client:open_remote",
    "replay:": "conformance.remote.cassette:open_cassette",
}
REMOTE_SCHEMES = tuple(SCHEMES)


class Unsupported(ConformanceError):
    """Raised by a provider for a step, fault, method or collection it cannot do.

    The check that needed it becomes *not applicable*, never *passed*.
    """

    status = Status.NOT_APPLICABLE
    exit_status = ExitStatus.FAILS
    prefix = "unsupported by the provider: "


class ProviderUnavailable(ConformanceError):
    """The provider cannot be loaded or started (exit code 3 of `conformance run`)."""

    exit_status = ExitStatus.UNAVAILABLE
    prefix = "provider unavailable: "


@dataclass(frozen=True)
class Outcome:
    """What one call returned.

    hresult: the method's return value as an unsigned 32-bit int (for Win32-convention
        functions, the status).
    outputs: out-parameters by name; an async out-parameter is None when it was not set.
    completion: the result delivered through IVdsAsync::Wait or IVMTask.Error; None where no
        async object was returned.
    """

    hresult: int
    outputs: dict[str, Any] = field(default_factory=dict)
    completion: int | None = None


class Provider:
    """Base class documenting the contract; every method may be overridden."""

    name: str = "provider"

    def capabilities(self) -> dict[str, list[str]]:
        """{"methods": [...ids], "steps": [...], "faults": [...], "observe": [...]}, and
        optionally "windows_version": "10.0.19045" for a backend that shows a real Windows's
        behaviour (only then may a spec's `observed` entries excuse a result)."""
        return {"methods": [], "steps": [], "faults": [], "observe": []}

    def reset(self) -> None:
        """Start a fresh, empty world; called before every test case."""

    def setup(self, step: dict[str, Any]) -> str:
        """Apply one `given` step and return the provider's id for what it created."""
        raise Unsupported(f"step {next(iter(step), '?')!r}")

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        """Call one method; args by parameter name, object references as provider ids."""
        raise Unsupported(f"method {method_id!r}")

    def observe(self, collection: str) -> list[dict[str, Any]]:
        """The provider's view of one abstract collection, ids as provider ids."""
        raise Unsupported(f"collection {collection!r}")

    def close(self) -> None:
        """Release whatever the provider holds."""


def available() -> dict[str, str]:
    """Installed providers by name -> 'module:attr', from the entry-point group."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load(spec: str, **options: Any) -> Provider:
    """Instantiate a provider from a name, 'pkg.module:Class', 'path/to/file.py:Class',
    'remote+tcp://HOST:PORT', 'remote+stdio:COMMAND' or 'replay:CASSETTE'."""
    scheme = next((s for s in SCHEMES if spec.startswith(s)), None)
    if scheme is not None:
        return _opener(scheme)(spec, **options)
    options.pop("token_file", None)  # only remote providers take a token
    target = _resolve(spec)
    try:
        provider = target(**options)
    except Unsupported as exc:
        raise ProviderUnavailable(f"provider {spec!r} unavailable: {exc}") from exc
    except ProviderUnavailable:
        raise
    except Exception as exc:
        raise ProviderUnavailable(
            f"provider {spec!r} failed to start: {type(exc).__name__}: {exc}"
        ) from exc
    missing = [m for m in CONTRACT if not callable(getattr(provider, m, None))]
    if missing:
        raise ProviderUnavailable(
            f"provider {spec!r} ({type(provider).__name__}) lacks {', '.join(missing)}: "
            "subclass conformance.provider.Provider, or define every method of the contract "
            "(see docs/writing-a-provider.md)"
        )
    return provider


def _opener(scheme: str) -> Any:
    """The function that opens a provider of `scheme` (`SCHEMES`)."""
    module, _, function = SCHEMES[scheme].partition(":")
    return getattr(importlib.import_module(module), function)


def _resolve(spec: str) -> Any:
    if ":" not in spec or _looks_like_windows_drive(spec):
        named = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
        if spec not in named:
            known = ", ".join(sorted(named)) or "none installed"
            raise ProviderUnavailable(
                f"unknown provider {spec!r}: not an entry point in {ENTRY_POINT_GROUP!r} "
                f"(installed: {known}); use a name, 'pkg.module:Class' or 'file.py:Class'"
            )
        try:
            return named[spec].load()
        except Exception as exc:
            raise ProviderUnavailable(
                f"provider {spec!r}: entry point {named[spec].value!r} does not import: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    where, _, attr = spec.rpartition(":")
    module = _import_file(where) if where.endswith(".py") else _import_module(where)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ProviderUnavailable(f"provider {spec!r}: {where} has no attribute {attr!r}") from None


def _looks_like_windows_drive(spec: str) -> bool:
    return len(spec) > 2 and spec[1] == ":" and spec[0].isalpha() and spec.count(":") == 1


def _import_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        hint = ""
        if exc.name and name.split(".")[0] == exc.name.split(".")[0]:
            hint = (
                f" (is its package installed, or the current folder the one holding "
                f"{name.split('.')[0]}/? A file path works from anywhere: "
                f"path/to/{name.replace('.', '/')}.py:Class)"
            )
        raise ProviderUnavailable(
            f"provider module {name!r} does not import: {type(exc).__name__}: {exc}{hint}"
        ) from exc
    except Exception as exc:
        raise ProviderUnavailable(
            f"provider module {name!r} does not import: {type(exc).__name__}: {exc}"
        ) from exc


def portable(spec: str) -> str:
    """The provider as a command run from any folder names it: a `file.py:Class` path made
    absolute (what a printed `conformance replay` line uses); anything else as given."""
    parts = []
    for one in spec.split(","):
        where, sep, attr = one.rpartition(":")
        if (
            sep
            and where.endswith(".py")
            and not one.startswith(REMOTE_SCHEMES)
            and Path(where).is_file()
        ):
            one = f"{Path(where).resolve()}:{attr}"
        parts.append(one)
    return ",".join(parts)


def _import_file(path: str) -> Any:
    file = Path(path)
    if not file.is_file():
        raise ProviderUnavailable(f"provider file {path!r} does not exist")
    name = f"_conformance_provider_{abs(hash(file.resolve()))}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ProviderUnavailable(f"provider file {path!r} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ProviderUnavailable(
            f"provider file {path!r} does not import: {type(exc).__name__}: {exc}"
        ) from exc
    return module
