"""Cassettes: a run's provider exchanges recorded to a file, and played back from it.

- `RecordingProvider`: wraps any provider and writes each exchange to a JSONL cassette
  (`--record FILE`), in the agent protocol's encoding (conformance.remote.protocol) with
  request ids replaced by op names; each xdist worker records a part, merged at the end.
- `CassetteProvider`: `replay:FILE` answers from a cassette, each check's exchanges in their
  recorded order, and fails clearly (`CassetteMismatch`) on a request the cassette does not
  hold next.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from conformance.engine.batch import (
    BatchingProvider,
    RefError,
    SubmittingProvider,
    batch_item,
    fill_refs,
)
from conformance.errors import UsageError
from conformance.provider import Outcome, Provider, ProviderUnavailable
from conformance.remote import protocol
from conformance.remote.protocol import ProtocolError

REPLAY_SCHEME = "replay:"
CASSETTE_VERSION = 1


def open_cassette(spec: str, **options: Any) -> Provider:
    """The provider for a `replay:FILE` spec (for `conformance.provider.load`); the options
    a remote provider takes (a token file, timeouts) mean nothing to a cassette."""
    if not spec.startswith(REPLAY_SCHEME):
        raise ProviderUnavailable(f"not a cassette: {spec!r}; use {REPLAY_SCHEME}FILE")
    return CassetteProvider(spec[len(REPLAY_SCHEME) :])


class CassetteMismatch(UsageError):
    """A replayed request that the cassette does not hold next."""


class RecordingProvider(Provider):
    """Passes every request to `inner` and appends the exchange to a JSONL cassette.

    Line 1 is a header (plus `header`: the run's seed, profile and code page, which a replay
    takes as its own); then one line per exchange: `{"op", "args", "result" | "error"}`, with
    args and results as the agent protocol encodes them and provider ids as given, so that
    `replay:FILE` can hand the same ids back to the harness. An exchange made during a check
    carries the check's name (`"check"`, see `begin_check`), so that a replay finds a check's
    exchanges whatever order the checks run in.

    With `parts` (the controller of a parallel run), each xdist worker records into its own
    part file (`cassette_part`); `close` merges the parts into this cassette.
    """

    def __init__(
        self,
        inner: Provider,
        path: str | Path,
        header: dict[str, Any] | None = None,
        parts: bool = False,
    ):
        self.inner = inner
        self.name = getattr(inner, "name", "provider")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.parts = parts_folder(self.path) if parts else None
        if self.parts is not None:
            shutil.rmtree(self.parts, ignore_errors=True)  # parts of an earlier run
        self._file = self.path.open("wb")
        self._lock = threading.Lock()
        self._check: str | None = None
        self._write(
            {
                "cassette": CASSETTE_VERSION,
                "protocol": protocol.PROTOCOL_VERSION,
                "provider": self.name,
                **(header or {}),
            }
        )
        if isinstance(inner, BatchingProvider):  # offered only when inner has it
            self.batch = self._batch
        if isinstance(inner, SubmittingProvider):  # recorded when `batch` reads the answer
            self.submit = inner.submit

    def begin_check(self, name: str | None) -> None:
        """File the exchanges that follow under check `name` (None: the run's own); a cassette
        being replayed underneath (re-recording a replay) moves to that check too."""
        with self._lock:
            self._check = name
        inner = cassette_of(self.inner)
        if inner is not None:
            inner.begin_check(name)

    def capabilities(self) -> dict[str, list[str]]:
        return self._exchange("capabilities", {}, self.inner.capabilities)

    def reset(self) -> None:
        self._exchange("reset", {}, self.inner.reset)

    def setup(self, step: dict[str, Any]) -> str:
        return self._exchange("setup", {"step": step}, lambda: self.inner.setup(step))

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        return self._exchange(
            "call",
            {"method": method_id, "args": args},
            lambda: self.inner.call(method_id, args),
            protocol.outcome_to_json,
        )

    def observe(self, collection: str) -> list[dict[str, Any]]:
        return self._exchange(
            "observe", {"collection": collection}, lambda: self.inner.observe(collection)
        )

    def close(self) -> None:
        try:
            self._exchange("close", {}, self.inner.close)
        finally:
            with self._lock:
                self._file.close()
            if self.parts is not None:
                merge_cassette(self.path, sorted(self.parts.glob("*.jsonl")))
                shutil.rmtree(self.parts, ignore_errors=True)

    def _batch(self, requests: list[dict[str, Any]]) -> list[Any]:
        """A batch (see RemoteProvider.batch), recorded as the exchanges it stands for, each
        with the ids filled in as the provider got them: a replay makes them one by one."""
        items = [batch_item(r) for r in requests]
        try:
            results = cast(BatchingProvider, self.inner).batch(requests)  # offered only then
        except Exception as exc:
            self._write(self._entry(items[0].op, items[0].params, error=exc))
            raise
        for item, result in zip(items, results, strict=False):
            try:
                params = fill_refs(item, results)
            except RefError:  # the provider's side refused the ref: it got the name
                params = item.params
            if isinstance(result, BaseException):
                self._write(self._entry(item.op, params, error=result))
            else:
                encode = protocol.outcome_to_json if item.op == "call" else protocol.json_safe
                self._write(self._entry(item.op, params, result=encode(result)))
        return results

    def _entry(self, op: str, params: dict[str, Any], **outcome: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {"op": op, "args": protocol.json_safe(params)}
        if self._check is not None:
            entry["check"] = self._check
        if "error" in outcome:
            entry["error"] = protocol.error_from_exception(outcome["error"])
        else:
            entry["result"] = outcome["result"]
        return entry

    def _exchange(
        self,
        op: str,
        params: dict[str, Any],
        run: Callable[[], Any],
        encode: Callable[[Any], Any] = protocol.json_safe,
    ) -> Any:
        entry: dict[str, Any] = {"op": op, "args": protocol.json_safe(params)}
        if self._check is not None:
            entry["check"] = self._check
        try:
            result = run()
        except Exception as exc:
            entry["error"] = protocol.error_from_exception(exc)
            self._write(entry)
            raise
        entry["result"] = encode(result)
        self._write(entry)
        return result

    def _write(self, entry: dict[str, Any]) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.write(protocol.encode(entry))
                self._file.flush()


class CassetteProvider(Provider):
    """Answers from a cassette, in recorded order; anything else raises CassetteMismatch.

    Deterministic by construction: it holds no state but a position in the cassette. Once a
    request does not match, every later one fails too (the run is out of step with it).

    A cassette whose exchanges carry check names (recorded by `conformance run --record`) is
    played per check: `begin_check(name)` moves to that check's exchanges, in their recorded
    order, so checks may run in any order and on any number of workers. Requests outside a
    check (the run's `capabilities`) are answered by the run's recorded ones. `header` holds
    the recorded run's seed, profile and code page.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.header, entries = _read_cassette(self.path)
        self.name = str(self.header.get("provider", "replay"))
        self._checks: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self._run: list[tuple[int, dict[str, Any]]] = []
        for line, entry in entries:
            if isinstance(entry.get("check"), str):
                self._checks.setdefault(entry["check"], []).append((line, entry))
            else:
                self._run.append((line, entry))
        self.by_check = bool(self._checks)
        self._entries = [] if self.by_check else entries  # the sequence being played
        self._check: str | None = None
        self._played: dict[str | None, int] = {}
        self._next = 0
        self._derailed: str | None = None
        self._lock = threading.Lock()

    def begin_check(self, name: str | None) -> None:
        """Play check `name`'s exchanges from its first (None: the run's own requests)."""
        if not self.by_check:
            return
        with self._lock:
            self._check = name
            self._entries = self._checks.get(name, []) if name is not None else []
            self._next = 0
            self._derailed = None

    def capabilities(self) -> dict[str, list[str]]:
        return self._play("capabilities", {})

    def reset(self) -> None:
        self._play("reset", {})

    def setup(self, step: dict[str, Any]) -> str:
        return self._play("setup", {"step": step})

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        return protocol.outcome_from_json(self._play("call", {"method": method_id, "args": args}))

    def observe(self, collection: str) -> list[dict[str, Any]]:
        return self._play("observe", {"collection": collection})

    def close(self) -> None:
        with self._lock:
            if (
                self._derailed is None
                and self._next < len(self._entries)
                and self._entries[self._next][1]["op"] == "close"
            ):
                self._next += 1
                self._played[self._check] = self._next

    @property
    def remaining(self) -> int:
        """Exchanges recorded but not played yet (of the checks, in a cassette by check)."""
        if self.by_check:
            return sum(len(e) for e in self._checks.values()) - sum(
                n for name, n in self._played.items() if name is not None
            )
        return len(self._entries) - self._next

    def _play(self, op: str, params: dict[str, Any]) -> Any:
        asked = _canonical(params)
        with self._lock:
            entry = self._take(op, params, asked)
        if "error" in entry:
            raise protocol.exception_from_error(entry["error"])
        return entry.get("result")

    def _take(self, op: str, params: dict[str, Any], asked: Any) -> dict[str, Any]:
        what = protocol.describe(op, params)
        if self.by_check and self._check is None:
            return self._run_request(op, what, asked)
        if self.by_check and self._check not in self._checks:
            raise CassetteMismatch(
                f"cassette {self.path} holds no exchange of check "
                f"{self._check} (for {what}): the recorded run did not run "
                "it, or it made no request then"
            )
        if self._derailed is not None:
            raise CassetteMismatch(
                f"cassette {self.path} is out of step with this run since "
                f"{self._derailed}; {what} is not played"
            )
        if self._next >= len(self._entries):
            of = f" of check {self._check}" if self._check is not None else ""
            raise CassetteMismatch(
                f"cassette {self.path} holds no exchange for {what}: all "
                f"{len(self._entries)} recorded exchanges{of} were played"
            )
        line, entry = self._entries[self._next]
        if entry["op"] != op or entry["args"] != asked:
            held = protocol.describe(entry["op"], entry["args"])
            difference = _difference(asked, entry["args"]) if entry["op"] == op else ""
            self._derailed = f"line {line} ({what} asked, {held} held)"
            raise CassetteMismatch(
                f"cassette {self.path} does not hold {what}{difference}: "
                f"its next exchange (line {line}) is {held}"
            )
        self._next += 1
        self._played[self._check] = self._next
        return entry

    def _run_request(self, op: str, what: str, asked: Any) -> dict[str, Any]:
        """A request outside any check: the run's recorded answer to the same request."""
        for _, entry in self._run:
            if entry["op"] == op and entry["args"] == asked:
                return entry
        raise CassetteMismatch(f"cassette {self.path} holds no {what} made outside a check")


def parts_folder(path: Path) -> Path:
    """Where the xdist workers of a run recording `path` write their parts."""
    return path.with_name(path.name + ".parts")


def cassette_part(path: str | Path, worker: str | None) -> Path:
    """The file a process records into: `path` itself, or an xdist worker's own part (the
    pid tells apart a worker that xdist replaced after a crash)."""
    if worker is None:
        return Path(path)
    return parts_folder(Path(path)) / f"{worker}-{os.getpid()}.jsonl"


def cassette_of(provider: Any) -> RecordingProvider | CassetteProvider | None:
    """The recording or replaying provider behind `provider` (through wrappers), or None."""
    for _ in range(10):
        if isinstance(provider, RecordingProvider | CassetteProvider):
            return provider
        provider = getattr(provider, "inner", None)
        if provider is None:
            return None
    return None


def merge_cassette(path: Path, parts: list[Path]) -> None:
    """Merge the workers' parts into the cassette at `path`, whose header and run-level
    exchanges (the controller's) come first, then every check's exchanges, checks in name
    order, each check's in recorded order: the same run gives the same file, however its
    checks were spread over workers."""
    header, own = _read_cassette(path)
    checks: dict[str, list[dict[str, Any]]] = {}
    for part in sorted(parts):
        _, entries = _read_cassette(part)
        for _, entry in entries:
            if isinstance(entry.get("check"), str):
                checks.setdefault(entry["check"], []).append(entry)
    lines = [{**header, "parts": len(parts)}, *(e for _, e in own if "check" not in e)]
    lines += [entry for name in sorted(checks) for entry in checks[name]]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(b"".join(protocol.encode(line) for line in lines))
    tmp.replace(path)


def _canonical(params: dict[str, Any]) -> Any:
    """Params as they read back from a cassette, so they compare equal to recorded ones."""
    return json.loads(protocol.encode(protocol.json_safe(params)))


def _difference(asked: Any, held: Any, path: str = "") -> str:
    """Where two requests of the same op first differ, for the mismatch message."""
    if isinstance(asked, dict) and isinstance(held, dict):
        for key in sorted(set(asked) | set(held), key=str):
            if asked.get(key, _ABSENT) != held.get(key, _ABSENT):
                return _difference(
                    asked.get(key, _ABSENT),
                    held.get(key, _ABSENT),
                    f"{path}.{key}" if path else str(key),
                )
        return ""
    shown = [("absent" if v is _ABSENT else json.dumps(v)[:120]) for v in (asked, held)]
    return f" ({path}: asked {shown[0]}, the cassette holds {shown[1]})"


_ABSENT = object()


def _read_cassette(path: Path) -> tuple[dict[str, Any], list[tuple[int, dict[str, Any]]]]:
    """The header and the (line number, exchange) pairs; ProviderUnavailable if unreadable."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise ProviderUnavailable(f"cassette {path}: {exc}") from None
    entries = []
    header: dict[str, Any] = {}
    for number, line in enumerate(lines, 1):
        try:
            message = protocol.decode(line)
        except ProtocolError as exc:
            raise ProviderUnavailable(f"cassette {path}, line {number}: {exc}") from None
        if number == 1:
            header = message
            if message.get("cassette") != CASSETTE_VERSION:
                raise ProviderUnavailable(
                    f"cassette {path}: line 1 is not a cassette "
                    f"header of version {CASSETTE_VERSION}"
                )
            continue
        if not isinstance(message.get("op"), str) or not isinstance(message.get("args"), dict):
            raise ProviderUnavailable(
                f"cassette {path}, line {number}: an exchange needs 'op' and 'args'"
            )
        entries.append((number, message))
    if not header:
        raise ProviderUnavailable(f"cassette {path} is empty")
    return header, entries
