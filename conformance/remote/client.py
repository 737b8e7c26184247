"""The harness's side of `conformance agent`: a provider in another process or machine.

`RemoteProvider` is `remote+tcp://HOST:PORT` or `remote+stdio:COMMAND` (COMMAND is started
and speaks conformance.remote.protocol on its stdin/stdout, e.g. `conformance agent
--provider reference --stdio`, or `ssh host conformance agent --provider windows --stdio`;
the streams are conformance.remote.transport's). A test case travels as one `batch`;
`submit` sends the next cases before their turn, so the agent runs them while the harness
judges the one before (their answers are read in order). `isolated` is the harness's own
worker process: a local provider served over stdio. Recorded runs (`--record`, `replay:`)
are conformance.remote.cassette's.

A lost connection fails the request in flight (the harness turns it into a failed check);
the next `reset()` reconnects, which gives a fresh provider on the agent's side. Until that
reset, other requests fail too rather than run against a world that no longer exists.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import logging
import shlex
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance.engine.batch import batch_item, run_each
from conformance.engine.worker import CallTimedOut
from conformance.provider import REMOTE_SCHEMES, Outcome, Provider, ProviderUnavailable
from conformance.remote import protocol
from conformance.remote.protocol import LineReader, MessageTooLarge, ProtocolError
from conformance.remote.transport import (
    STDIO_SCHEME,
    TCP_SCHEME,
    Transport,
    transport_factory,
)

log = logging.getLogger("conformance.remote.client")

_FRESH_OPS = frozenset({"reset", "capabilities", "close"})  # need no world on the agent side
_MAX_AGENT_MESSAGE = 64 << 20  # the most we accept an agent to announce as its limit


def open_remote(spec: str, **options: Any) -> Provider:
    """The provider for a `remote+tcp://` or `remote+stdio:` spec (for
    `conformance.provider.load`)."""
    try:
        if spec.startswith((TCP_SCHEME, STDIO_SCHEME)):
            return RemoteProvider(spec, **options)
    except TypeError as exc:  # an option the provider does not take
        raise ProviderUnavailable(f"provider {spec!r}: {exc}") from None
    raise ProviderUnavailable(
        f"unknown remote provider {spec!r}: use {TCP_SCHEME}HOST:PORT or {STDIO_SCHEME}COMMAND"
    )


def is_local(spec: str) -> bool:
    """A provider this process would load itself (a name, module or file), not a remote one."""
    return "://" not in spec and not spec.startswith(REMOTE_SCHEMES)


def isolated(provider: str, call_timeout: float | None, memory: int = 0) -> str:
    """The provider served by an agent in a child process over stdio (a worker process that
    the harness replaces after a crash or a hang, its address space limited to `memory`
    bytes when given); remote and replayed providers unchanged."""
    if not is_local(provider):
        return provider
    command = [
        sys.executable,
        "-m",
        "conformance",
        "agent",
        "--provider",
        provider,
        "--stdio",
        "--call-timeout",
        str(call_timeout or 0),
        "--log-level",
        "WARNING",
    ]
    command += ["--memory-limit", str(memory)] if memory else []
    return STDIO_SCHEME + shlex.join(command)


class AgentRefused(ProviderUnavailable, ConnectionError):
    """The agent could not be reached or would not serve us; the message says why.

    `refused` is the agent's own reason when it answered the hello with a refusal.
    """

    def __init__(self, message: str, refused: str | None = None):
        super().__init__(message)
        self.refused = refused


class _TooLarge(ValueError):
    """A request over the agent's message limit; it was not sent."""


class _NotRun(Exception):
    """The connection ended before the agent read the request (a `bye`, or send failed)."""


AHEAD_CASES = 8  # test cases a RemoteProvider keeps sent ahead of the engine (`submit`)
_AHEAD_BYTES = 32 << 10  # and their bytes at most: well under a pipe's buffer, so neither
# side can block writing while the other does


@dataclass(frozen=True)
class _Ahead:
    """A batch sent before the engine asked for it (`submit`), its answer not read yet."""

    request_id: int
    requests: list[dict[str, Any]]
    size: int


class _Connection:
    """One open stream after a successful hello."""

    def __init__(self, transport: Transport, reader: LineReader, welcome: dict[str, Any]):
        self.transport = transport
        self.reader = reader
        self.welcome = welcome
        limits = welcome.get("limits")
        if not isinstance(limits, dict):
            limits = {}
        announced = limits.get("max_message")
        if isinstance(announced, int) and 64 <= announced <= _MAX_AGENT_MESSAGE:
            reader.limit = announced
        self.max_message = reader.limit
        call_timeout = limits.get("call_timeout")
        self.call_timeout = call_timeout if isinstance(call_timeout, int | float) else None
        ops = welcome.get("ops")
        self.batch = isinstance(ops, list) and "batch" in ops  # an optional op: see protocol


# -- the remote provider --------------------------------------------------------------------------


class RemoteProvider(Provider):
    """A provider served by `conformance agent`; the hello happens here, in the constructor.

    Options: `token_file` (the agent's token), `timeout` (seconds to wait for any answer;
    default: the agent's call timeout plus 10 s), `connect_timeout` (connect and hello).
    `deadline` (a time.monotonic() value, or None) bounds every wait further: the harness sets
    it to the end of the check's budget. A ProviderUnavailable raised here carries `refused`,
    the agent's own reason when it refused the hello (else None).
    """

    name = "remote"

    def __init__(
        self,
        spec: str,
        *,
        token_file: str | None = None,
        timeout: float | None = None,
        connect_timeout: float = 10.0,
    ):
        self.spec = spec
        self._open_transport = transport_factory(spec)
        self._token = _read_token(token_file) if token_file else None
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._stale = False  # a connection was lost since the last reset
        self._ahead: collections.deque[_Ahead] = collections.deque()  # in the order sent
        self.deadline: float | None = None
        try:
            self._conn: _Connection | None = self._connect()
        except AgentRefused as exc:
            error = ProviderUnavailable(str(exc))
            # the stable contract's ProviderUnavailable has no `refused`: carried beside it
            error.refused = exc.refused  # type: ignore[attr-defined]
            raise error from None
        self.welcome = self._conn.welcome
        self.name = str(self.welcome.get("provider") or self.name)

    # -- the contract --
    def capabilities(self) -> dict[str, list[str]]:
        return self._request("capabilities")

    def reset(self) -> None:
        self._request("reset")
        self._stale = False

    def setup(self, step: dict[str, Any]) -> str:
        return self._request("setup", step=step)

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        return protocol.outcome_from_json(self._request("call", method=method_id, args=args))

    def observe(self, collection: str) -> list[dict[str, Any]]:
        return self._request("observe", collection=collection)

    def batch(self, requests: list[dict[str, Any]]) -> list[Any]:
        """Batch requests (see protocol: op, params, refs, expect_*) in one round trip when
        the agent offers batches, else one at a time with the same rules: what each returned
        (a call's Outcome), or the exception that ended the batch. Timeouts and a lost
        connection raise as for a single request. A batch that starts with a reset may go on
        a new connection, as a reset would; one sent ahead (`submit`) is not sent again."""
        fresh = requests[0]["op"] == "reset"
        with self._lock:
            if self._ahead:
                results = self._take_ahead(requests)
                if results is not None:
                    return results
            if fresh and self._conn is None:
                self.connect()
            if self._conn is not None and self._conn.batch and (fresh or not self._stale):
                try:
                    answers = self._send("batch", {"requests": requests}, fresh)
                except _TooLarge:  # not sent: one request at a time fits
                    return self._one_by_one(requests)
                if fresh:
                    self._stale = False  # the reset ran
                return _results(answers, requests)
            return self._one_by_one(requests)

    def submit(self, batches: list[list[dict[str, Any]]]) -> bool:
        """Send the batches of test cases the engine will ask for next (each starts with a
        reset), so that the agent runs them while the engine judges earlier ones; `batch`
        with the same requests then reads the answer. All or nothing: False, nothing sent,
        when the agent takes no batches or `AHEAD_CASES` (or `_AHEAD_BYTES`) would be
        exceeded. Never raises: a lost connection shows at the next request."""
        with self._lock:
            conn = self._conn
            if (
                conn is None
                or not conn.batch
                or len(self._ahead) + len(batches) > AHEAD_CASES
                or not all(b and b[0].get("op") == "reset" for b in batches)
            ):
                return False
            sent: list[_Ahead] = []
            data = b"".join(self._ahead_line(requests, sent) for requests in batches)
            if (
                any(a.size - 1 > conn.max_message for a in sent)
                or sum(a.size for a in (*self._ahead, *sent)) > _AHEAD_BYTES
            ):
                return False
            try:
                conn.transport.send(data)
            except OSError:
                self._drop()
                return False
            self._ahead.extend(sent)
            return True

    def _ahead_line(self, requests: list[dict[str, Any]], sent: list[_Ahead]) -> bytes:
        request_id = next(self._ids)
        line = protocol.encode(protocol.request(request_id, "batch", requests=requests))
        sent.append(_Ahead(request_id, requests, len(line)))
        return line

    def _take_ahead(self, requests: list[dict[str, Any]]) -> list[Any] | None:
        """The answer to a batch sent ahead with these requests (those sent before it are
        read and dropped: the engine went past them), or None when there is none."""
        found = next((i for i, a in enumerate(self._ahead) if a.requests == requests), None)
        if found is None:
            return None
        for _ in range(found):
            self._skip_ahead()
        conn = self._conn
        if conn is None or not self._ahead:  # lost while reading the skipped answers
            return None
        ahead = self._ahead.popleft()
        try:
            answers = self._answer(conn, ahead.request_id, "batch", {"requests": requests})
        except _NotRun:  # the agent ended the connection first: send it again on a new one
            return None
        self._stale = False
        return _results(answers, requests)

    def _skip_ahead(self) -> None:
        """Read and drop the answer to the oldest batch sent ahead."""
        ahead, conn = self._ahead.popleft(), self._conn
        if conn is not None:
            with contextlib.suppress(Exception):
                self._answer(conn, ahead.request_id, "batch", {"requests": ahead.requests})

    def _one_by_one(self, requests: list[dict[str, Any]]) -> list[Any]:
        results = run_each([batch_item(r) for r in requests], self._perform)
        if results and isinstance(results[-1], CallTimedOut):
            raise results[-1]
        return results

    def _perform(self, op: str, params: dict[str, Any]) -> Any:
        result = self._request(op, **params)
        if op == "reset":
            self._stale = False
        return protocol.outcome_from_json(result) if op == "call" else result

    def connect(self) -> bool:
        """Open a connection now if there is none (for a stdio agent: start a new worker), so
        that its start-up is not counted in the next check; False if that failed (the next
        request tries again, and its error says why). The world stays stale until a reset."""
        with self._lock:
            if self._conn is not None:
                return True
            try:
                self._conn = self._connect()
            except AgentRefused as exc:
                log.info("no new connection before the next check: %s", exc)
                return False
            return True

    def restart(self) -> None:
        """End the connection now, without a goodbye (a stdio agent process is killed): the
        next reset starts a fresh one. For a provider that may be stuck; never raises."""
        with self._lock:
            conn, self._conn = self._conn, None
            self._stale = True
            self._ahead.clear()
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.transport._interrupt()
            conn.transport.close()

    def close(self) -> None:
        """Say goodbye (the agent closes its provider) and end the stream; never raises."""
        with self._lock:
            conn, self._conn = self._conn, None
            self._ahead.clear()  # their answers come first: the close is answered after them
            if conn is None:
                return
            try:
                conn.transport.send(protocol.encode(protocol.request(next(self._ids), "close")))
                conn.transport.begin_wait(5.0)
                conn.reader.read_line()
            except (OSError, ProtocolError):
                pass
            finally:
                conn.transport.close()

    # -- connecting --
    def _connect(self) -> _Connection:
        """Open a stream and do the hello; AgentRefused says why it did not work."""
        try:
            transport = self._open_transport(self._connect_timeout)
        except OSError as exc:
            raise AgentRefused(f"cannot reach the agent {self._where()}: {exc}") from None
        try:
            return self._hello(transport)
        except BaseException:
            transport.close()
            raise

    def _hello(self, transport: Transport) -> _Connection:
        where = transport.where
        reader = LineReader(transport.recv)
        try:
            transport.send(protocol.encode(protocol.hello(self._token)))
            transport.begin_wait(self._connect_timeout)
            line = reader.read_line()
            transport.end_wait()
            answer = protocol.decode(line) if line is not None else None
        except (OSError, ProtocolError) as exc:
            raise AgentRefused(
                f"the agent at {where} did not answer the hello: {exc}{transport.why_ended()}"
            ) from None
        if answer is None:
            raise AgentRefused(
                f"the agent at {where} closed the connection without answering "
                f"the hello{transport.why_ended()}"
            )
        if "refused" in answer:
            raise AgentRefused(
                f"the agent at {where} refused the connection: {answer['refused']}",
                str(answer["refused"]),
            )
        version = answer.get("welcome")
        if version != protocol.PROTOCOL_VERSION:
            raise AgentRefused(
                f"the agent at {where} answered the hello with protocol version "
                f"{version!r}; this harness speaks version "
                f"{protocol.PROTOCOL_VERSION}: {json.dumps(answer)[:200]}"
            )
        return _Connection(transport, reader, answer)

    def _where(self) -> str:
        return (
            self.spec[len(TCP_SCHEME) :]
            if self.spec.startswith(TCP_SCHEME)
            else f"`{self.spec[len(STDIO_SCHEME) :]}`"
        )

    # -- requests --
    def _request(self, op: str, **params: Any) -> Any:
        return self._send(op, params, op in _FRESH_OPS)

    def _send(self, op: str, params: dict[str, Any], fresh: bool) -> Any:
        """One request and its answer; `fresh`: it needs no world on the agent's side (a
        reset, or a batch that starts with one), so it may go on a new connection."""
        with self._lock:
            if self._stale and not fresh:
                raise ConnectionError(
                    f"{protocol.describe(op, params)} not sent: the connection to the agent was "
                    "lost earlier in this test case, and with it the agent's world (the next "
                    "reset reconnects)"
                )
            if self._ahead and not fresh:
                raise RuntimeError(
                    f"{protocol.describe(op, params)} not sent: the agent has run test cases "
                    "sent ahead since this one's world was built (a harness bug: the engine "
                    "announced cases it did not ask for in order)"
                )
            while self._ahead:
                self._skip_ahead()
            for attempt in range(2):
                try:
                    return self._exchange(op, params)
                except _NotRun as exc:
                    if fresh and attempt == 0:
                        continue  # nothing depended on the old connection: try a new one
                    raise ConnectionError(
                        f"the agent ended the connection before "
                        f"{protocol.describe(op, params)}: {exc}"
                    ) from None
            raise AssertionError("unreachable")

    def _exchange(self, op: str, params: dict[str, Any]) -> Any:
        conn = self._conn or self._reconnect(op, params)
        request_id = next(self._ids)
        data = protocol.encode(protocol.request(request_id, op, **params))
        if len(data) - 1 > conn.max_message:
            raise _TooLarge(
                f"{protocol.describe(op, params)} is {len(data) - 1} bytes as a "
                f"request, over the agent's message limit of {conn.max_message} "
                "bytes; it was not sent"
            )
        try:
            conn.transport.send(data)
        except OSError as exc:
            self._drop()
            raise _NotRun(f"{exc}{conn.transport.why_ended()}") from None
        return self._answer(conn, request_id, op, params)

    def _answer(self, conn: _Connection, request_id: int, op: str, params: dict[str, Any]) -> Any:
        timeout = self._timeout or (conn.call_timeout + 10 if conn.call_timeout else None)
        if op == "batch" and timeout is not None:  # each request has the per-call timeout
            timeout += (len(params["requests"]) - 1) * (conn.call_timeout or 0)
        budget = False
        if self.deadline is not None:
            left = max(self.deadline - time.monotonic(), 0.001)
            if timeout is None or left < timeout:
                timeout, budget = left, True
        try:
            conn.transport.begin_wait(timeout)
            line = conn.reader.read_line()
            conn.transport.end_wait()
        except MessageTooLarge as exc:
            raise protocol.RemoteProtocolError(
                f"the agent's answer to {protocol.describe(op, params)}: {exc}"
            ) from None
        except TimeoutError:
            self._drop()
            what = protocol.describe(op, params)
            if budget:
                raise CallTimedOut(
                    f"no answer from the agent to {what} before the check's "
                    "deadline; the connection was closed (the next reset "
                    "reconnects)",
                    timeout,
                    what,
                    budget=True,
                ) from None
            raise CallTimedOut(
                f"timed out after {timeout:g} s in {what}: no answer from the "
                "agent; the connection was closed (the next reset reconnects)",
                timeout,
                what,
            ) from None
        except (OSError, ProtocolError) as exc:
            self._drop()
            raise ConnectionError(
                f"connection to the agent lost during "
                f"{protocol.describe(op, params)}: "
                f"{exc}{conn.transport.why_ended()}"
            ) from None
        if line is None:
            self._drop()
            raise ConnectionError(
                f"connection to the agent lost during "
                f"{protocol.describe(op, params)}: the agent closed the "
                f"connection{conn.transport.why_ended()}"
            )
        try:
            message = protocol.decode(line)
        except ProtocolError as exc:
            self._drop()
            raise ConnectionError(
                f"the agent's answer to {protocol.describe(op, params)} is "
                f"malformed: {exc}; the connection was closed"
            ) from None
        return self._result(message, request_id, op, params)

    def _result(
        self, message: dict[str, Any], request_id: int, op: str, params: dict[str, Any]
    ) -> Any:
        if message.get("id") not in (request_id, None) and "bye" not in message:
            self._drop()
            raise ConnectionError(
                f"the agent's answer to {protocol.describe(op, params)} is "
                f"not an answer to it: {json.dumps(message)[:200]}; the "
                "connection was closed"
            )
        if "bye" in message:
            self._drop()
            raise _NotRun(str(message["bye"]))
        if message.get("ok") is True:
            return message.get("result")
        exc = protocol.exception_from_error(message.get("error"))
        if isinstance(exc, TimeoutError):
            limit = self._conn.call_timeout if self._conn is not None else None
            self._drop()  # the agent closes a connection whose provider is stuck
            what = protocol.describe(op, params)
            after = f"after {limit:g} s " if limit else ""
            raise CallTimedOut(f"timed out {after}in {what}: {exc}", limit, what) from None
        raise exc

    def _reconnect(self, op: str, params: dict[str, Any]) -> _Connection:
        try:
            self._conn = self._connect()
        except AgentRefused as exc:
            raise ConnectionError(
                f"cannot reconnect to the agent for {protocol.describe(op, params)}: {exc}"
            ) from None
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._stale = True
        self._ahead.clear()
        if conn is not None:
            conn.transport.close()


def _results(answers: Any, requests: list[dict[str, Any]]) -> list[Any]:
    """A batch's answers as results: a call's as an Outcome, an error as its exception; they
    end at an error, unless its request may fail."""
    if not isinstance(answers, list) or not answers:
        raise protocol.RemoteProtocolError(
            f"the agent answered a batch with {json.dumps(answers)[:200]}"
        )
    out: list[Any] = []
    for answer, request in zip(
        answers, [*requests, *[{}] * (len(answers) - len(requests))], strict=False
    ):
        if type(answer) is dict and answer.get("ok") is True:
            result = answer.get("result")
            out.append(
                protocol.outcome_from_json(result) if request.get("op") == "call" else result
            )
            continue
        error = answer.get("error") if isinstance(answer, dict) else None
        out.append(protocol.exception_from_error(error))
        if request.get("may_fail") is not True:
            break
    return out


def _read_token(path: str) -> str:
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ProviderUnavailable(f"cannot read token file {path}: {exc}") from None
    if not token:
        raise ProviderUnavailable(f"token file {path} is empty")
    return token
