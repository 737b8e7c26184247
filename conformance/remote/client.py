"""Providers that are not in this process: an agent over TCP or stdio, and recorded cassettes.

- `RemoteProvider`: `remote+tcp://HOST:PORT` or `remote+stdio:COMMAND` (COMMAND is started and
  speaks conformance.remote.protocol on its stdin/stdout, e.g. `conformance agent --provider
  reference --stdio`, or `ssh host conformance agent --provider windows --stdio`). A test
  case travels as one `batch`; `submit` sends the next cases before their turn, so the agent
  runs them while the harness judges the one before (their answers are read in order).
- `RecordingProvider`: wraps any provider and writes each exchange to a JSONL cassette
  (`--record FILE`), in the protocol's encoding with request ids replaced by op names.
- `CassetteProvider`: `replay:FILE` answers from a cassette, in order, and fails clearly on a
  request the cassette does not hold next.

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
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from conformance.provider import Outcome, Provider, ProviderUnavailable
from conformance.remote import protocol
from conformance.remote.protocol import LineReader, MessageTooLarge, ProtocolError

log = logging.getLogger("conformance.remote.client")

TCP_SCHEME = "remote+tcp://"
STDIO_SCHEME = "remote+stdio:"
REPLAY_SCHEME = "replay:"
CASSETTE_VERSION = 1
STDERR_CHUNK = 65536  # bytes read from an agent's stderr at a time
_FRESH_OPS = frozenset({"reset", "capabilities", "close"})  # need no world on the agent side
_MAX_AGENT_MESSAGE = 64 << 20  # the most we accept an agent to announce as its limit


def open_remote(spec: str, **options: Any) -> Provider:
    """The provider for a `remote+tcp://`, `remote+stdio:` or `replay:` spec (for load())."""
    try:
        if spec.startswith(REPLAY_SCHEME):
            return CassetteProvider(spec[len(REPLAY_SCHEME):])
        if spec.startswith((TCP_SCHEME, STDIO_SCHEME)):
            return RemoteProvider(spec, **options)
    except TypeError as exc:  # an option the provider does not take
        raise ProviderUnavailable(f"provider {spec!r}: {exc}") from None
    raise ProviderUnavailable(f"unknown remote provider {spec!r}: use {TCP_SCHEME}HOST:PORT, "
                              f"{STDIO_SCHEME}COMMAND or {REPLAY_SCHEME}FILE")


def is_local(spec: str) -> bool:
    """A provider this process would load itself (a name, module or file), not a remote one."""
    return "://" not in spec and not spec.startswith((TCP_SCHEME, STDIO_SCHEME, REPLAY_SCHEME))


def isolated(provider: str, call_timeout: float | None, memory: int = 0) -> str:
    """The provider served by an agent in a child process over stdio (a worker process that
    the harness replaces after a crash or a hang, its address space limited to `memory`
    bytes when given); remote and replayed providers unchanged."""
    if not is_local(provider):
        return provider
    command = [sys.executable, "-m", "conformance", "agent", "--provider", provider, "--stdio",
               "--call-timeout", str(call_timeout or 0), "--log-level", "WARNING"]
    command += ["--memory-limit", str(memory)] if memory else []
    return STDIO_SCHEME + shlex.join(command)


class CallTimedOut(TimeoutError):
    """A request got no answer in time: the agent's per-call timeout fired, or the harness
    stopped waiting (its own wait, or the check's deadline when `budget` is true).

    `seconds` is the limit that fired, `what` the request (`call(M)`, `reset()`...).
    """

    def __init__(self, message: str, seconds: float | None, what: str, budget: bool = False):
        super().__init__(message)
        self.seconds = seconds
        self.what = what
        self.budget = budget


class AgentRefused(ConnectionError):
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


# -- transports -----------------------------------------------------------------------------------

class _Transport:
    """A blocking byte stream to one agent, with a watchdog that bounds each wait.

    Blocking I/O plus a watchdog that interrupts the stream costs one system call per read
    or write; a socket timeout would add a poll() to each.
    """

    where = "?"

    def __init__(self) -> None:
        self._watchdog = protocol.Watchdog(poll=0.05)
        self._timeout: float | None = None
        self.timed_out = False

    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def _read(self, size: int) -> bytes:
        raise NotImplementedError

    def _interrupt(self) -> None:
        """Unblock a pending read from the watchdog's thread (the stream is lost)."""
        raise NotImplementedError

    def recv(self, size: int) -> bytes:
        data = self._read(size)
        if self.timed_out:
            raise TimeoutError(f"no answer within {self._timeout} s")
        return data

    def begin_wait(self, seconds: float | None) -> None:
        """Bound the wait for the answer about to be read (None: wait as long as it takes)."""
        self._timeout = seconds
        self._watchdog.arm(seconds, self._expire)

    def end_wait(self) -> None:
        """The answer arrived."""
        self._watchdog.disarm()

    def _expire(self) -> None:
        self.timed_out = True
        with contextlib.suppress(OSError):
            self._interrupt()

    def close(self) -> None:
        self._watchdog.stop()

    def why_ended(self) -> str:
        """What is known about why the stream ended ('' when nothing more is known)."""
        return ""


class _TcpTransport(_Transport):
    def __init__(self, host: str, port: int, connect_timeout: float):
        super().__init__()
        self.where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.sock = socket.create_connection((host, port), timeout=connect_timeout)
        self.sock.settimeout(None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read(self, size: int) -> bytes:
        return self.sock.recv(size)

    def _interrupt(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        super().close()
        with contextlib.suppress(OSError):
            self.sock.close()


class _StdioTransport(_Transport):
    """An agent process on pipes; an overdue answer kills it."""

    def __init__(self, argv: list[str], connect_timeout: float):
        super().__init__()
        self.where = f"`{shlex.join(argv)}`"
        # its own process group (POSIX): what the provider forks goes with the worker, so a
        # child holding the pipes cannot outlive a timeout or the run
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, bufsize=0,
                                     start_new_session=os.name == "posix")
        assert self.proc.stdin and self.proc.stdout and self.proc.stderr
        self._stdin: IO[bytes] = self.proc.stdin
        self._stdout = self.proc.stdout.fileno()
        self._tail: collections.deque[str] = collections.deque(maxlen=5)
        self._drain = threading.Thread(target=self._read_stderr, args=(self.proc.stderr,),
                                       name="conformance-agent-stderr", daemon=True)
        self._drain.start()

    def _read_stderr(self, stream: IO[bytes]) -> None:
        """Drain the agent's stderr in large reads (the pipe is unbuffered: a readline on it
        reads a byte per system call, and a provider that logs a lot then waits on a full
        pipe until its calls time out), keeping the last lines for the reason of an exit."""
        fd, pending = stream.fileno(), b""
        while True:
            try:
                chunk = os.read(fd, STDERR_CHUNK)
            except OSError:
                break
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            pending = pending[-STDERR_CHUNK:]  # a line that never ends is kept to its tail
            self._note(lines)
        if pending:
            self._note([pending])

    def _note(self, lines: list[bytes]) -> None:
        logging_ = log.isEnabledFor(logging.INFO)
        for raw in lines if logging_ else lines[-(self._tail.maxlen or 1):]:
            line = raw.decode("utf-8", "replace").rstrip()
            self._tail.append(line)
            if logging_:
                log.info("agent: %s", line)

    def send(self, data: bytes) -> None:
        self._stdin.write(data)
        self._stdin.flush()

    def _read(self, size: int) -> bytes:
        return os.read(self._stdout, size)

    def _interrupt(self) -> None:
        self._kill_group()

    def _kill_group(self) -> None:
        """The worker and everything it started (a provider's forked children)."""
        if os.name == "posix":
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.proc.kill()

    def close(self) -> None:
        super().close()
        with contextlib.suppress(OSError):
            self._stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._kill_group()
            self.proc.wait()
        else:
            self._kill_group()  # the worker ended: what it left running ends too
        with contextlib.suppress(OSError):
            self.proc.stdout.close()  # type: ignore[union-attr]

    def why_ended(self) -> str:
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return ""
        self._drain.join(timeout=1)
        said = f": {self._tail[-1]}" if self._tail else ""
        return f" (the agent process exited with code {code}{said})"


def _transport_factory(spec: str) -> Callable[[float], _Transport]:
    """How to open a new stream for a spec; a malformed spec is ProviderUnavailable now."""
    if spec.startswith(TCP_SCHEME):
        try:
            parts = urlsplit(spec)
            host, port = parts.hostname, parts.port
        except ValueError as exc:
            raise ProviderUnavailable(f"{spec!r}: {exc}") from None
        if not host or port is None:
            raise ProviderUnavailable(f"{spec!r}: expected {TCP_SCHEME}HOST:PORT")
        return lambda timeout: _TcpTransport(host, port, timeout)
    try:
        argv = shlex.split(spec[len(STDIO_SCHEME):], posix=os.name != "nt")
    except ValueError as exc:
        raise ProviderUnavailable(f"{spec!r}: {exc}") from None
    if not argv:
        raise ProviderUnavailable(f"{spec!r}: expected {STDIO_SCHEME}COMMAND")
    return lambda timeout: _StdioTransport(argv, timeout)


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

    def __init__(self, transport: _Transport, reader: LineReader, welcome: dict[str, Any]):
        self.transport = transport
        self.reader = reader
        self.welcome = welcome
        limits = welcome.get("limits") if isinstance(welcome.get("limits"), dict) else {}
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

    def __init__(self, spec: str, *, token_file: str | None = None,
                 timeout: float | None = None, connect_timeout: float = 10.0):
        self.spec = spec
        self._open_transport = _transport_factory(spec)
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
            if conn is None or not conn.batch or \
                    len(self._ahead) + len(batches) > AHEAD_CASES or \
                    not all(b and b[0].get("op") == "reset" for b in batches):
                return False
            sent: list[_Ahead] = []
            data = b"".join(self._ahead_line(requests, sent) for requests in batches)
            if any(a.size - 1 > conn.max_message for a in sent) or \
                    sum(a.size for a in (*self._ahead, *sent)) > _AHEAD_BYTES:
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
        results = protocol.run_each([protocol.batch_item(r) for r in requests], self._perform)
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

    def _hello(self, transport: _Transport) -> _Connection:
        where = transport.where
        reader = LineReader(transport.recv)
        try:
            transport.send(protocol.encode(protocol.hello(self._token)))
            transport.begin_wait(self._connect_timeout)
            line = reader.read_line()
            transport.end_wait()
            answer = protocol.decode(line) if line is not None else None
        except (OSError, ProtocolError) as exc:
            raise AgentRefused(f"the agent at {where} did not answer the hello: "
                               f"{exc}{transport.why_ended()}") from None
        if answer is None:
            raise AgentRefused(f"the agent at {where} closed the connection without answering "
                               f"the hello{transport.why_ended()}")
        if "refused" in answer:
            raise AgentRefused(f"the agent at {where} refused the connection: "
                               f"{answer['refused']}", str(answer["refused"]))
        version = answer.get("welcome")
        if version != protocol.PROTOCOL_VERSION:
            raise AgentRefused(f"the agent at {where} answered the hello with protocol version "
                               f"{version!r}; this harness speaks version "
                               f"{protocol.PROTOCOL_VERSION}: {json.dumps(answer)[:200]}")
        return _Connection(transport, reader, answer)

    def _where(self) -> str:
        return self.spec[len(TCP_SCHEME):] if self.spec.startswith(TCP_SCHEME) else \
            f"`{self.spec[len(STDIO_SCHEME):]}`"

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
                    "reset reconnects)")
            if self._ahead and not fresh:
                raise RuntimeError(
                    f"{protocol.describe(op, params)} not sent: the agent has run test cases "
                    "sent ahead since this one's world was built (a harness bug: the engine "
                    "announced cases it did not ask for in order)")
            while self._ahead:
                self._skip_ahead()
            for attempt in range(2):
                try:
                    return self._exchange(op, params)
                except _NotRun as exc:
                    if fresh and attempt == 0:
                        continue  # nothing depended on the old connection: try a new one
                    raise ConnectionError(f"the agent ended the connection before "
                                          f"{protocol.describe(op, params)}: {exc}") from None
            raise AssertionError("unreachable")

    def _exchange(self, op: str, params: dict[str, Any]) -> Any:
        conn = self._conn or self._reconnect(op, params)
        request_id = next(self._ids)
        data = protocol.encode(protocol.request(request_id, op, **params))
        if len(data) - 1 > conn.max_message:
            raise _TooLarge(f"{protocol.describe(op, params)} is {len(data) - 1} bytes as a "
                             f"request, over the agent's message limit of {conn.max_message} "
                             "bytes; it was not sent")
        try:
            conn.transport.send(data)
        except OSError as exc:
            self._drop()
            raise _NotRun(f"{exc}{conn.transport.why_ended()}") from None
        return self._answer(conn, request_id, op, params)

    def _answer(self, conn: _Connection, request_id: int, op: str,
                params: dict[str, Any]) -> Any:
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
                f"the agent's answer to {protocol.describe(op, params)}: {exc}") from None
        except TimeoutError:
            self._drop()
            what = protocol.describe(op, params)
            if budget:
                raise CallTimedOut(f"no answer from the agent to {what} before the check's "
                                   "deadline; the connection was closed (the next reset "
                                   "reconnects)", timeout, what, budget=True) from None
            raise CallTimedOut(f"timed out after {timeout:g} s in {what}: no answer from the "
                               "agent; the connection was closed (the next reset reconnects)",
                               timeout, what) from None
        except (OSError, ProtocolError) as exc:
            self._drop()
            raise ConnectionError(f"connection to the agent lost during "
                                  f"{protocol.describe(op, params)}: "
                                  f"{exc}{conn.transport.why_ended()}") from None
        if line is None:
            self._drop()
            raise ConnectionError(f"connection to the agent lost during "
                                  f"{protocol.describe(op, params)}: the agent closed the "
                                  f"connection{conn.transport.why_ended()}")
        try:
            message = protocol.decode(line)
        except ProtocolError as exc:
            self._drop()
            raise ConnectionError(f"the agent's answer to {protocol.describe(op, params)} is "
                                  f"malformed: {exc}; the connection was closed") from None
        return self._result(message, request_id, op, params)

    def _result(self, message: dict[str, Any], request_id: int, op: str,
                params: dict[str, Any]) -> Any:
        if message.get("id") not in (request_id, None) and "bye" not in message:
            self._drop()
            raise ConnectionError(f"the agent's answer to {protocol.describe(op, params)} is "
                                  f"not an answer to it: {json.dumps(message)[:200]}; the "
                                  "connection was closed")
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
            raise ConnectionError(f"cannot reconnect to the agent for "
                                  f"{protocol.describe(op, params)}: {exc}") from None
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
        raise protocol.RemoteProtocolError(f"the agent answered a batch with "
                                           f"{json.dumps(answers)[:200]}")
    out: list[Any] = []
    for answer, request in zip(answers, [*requests, *[{}] * (len(answers) - len(requests))],
                               strict=False):
        if type(answer) is dict and answer.get("ok") is True:
            result = answer.get("result")
            out.append(protocol.outcome_from_json(result) if request.get("op") == "call"
                       else result)
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


# -- recording and replay -------------------------------------------------------------------------

class CassetteMismatch(Exception):
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

    def __init__(self, inner: Provider, path: str | Path,
                 header: dict[str, Any] | None = None, parts: bool = False):
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
        self._write({"cassette": CASSETTE_VERSION, "protocol": protocol.PROTOCOL_VERSION,
                     "provider": self.name, **(header or {})})
        if callable(getattr(inner, "batch", None)):  # offered only when inner has it
            self.batch = self._batch
        if callable(getattr(inner, "submit", None)):  # recorded when `batch` reads the answer
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
        return self._exchange("call", {"method": method_id, "args": args},
                              lambda: self.inner.call(method_id, args),
                              protocol.outcome_to_json)

    def observe(self, collection: str) -> list[dict[str, Any]]:
        return self._exchange("observe", {"collection": collection},
                              lambda: self.inner.observe(collection))

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
        items = [protocol.batch_item(r) for r in requests]
        try:
            results = self.inner.batch(requests)  # type: ignore[attr-defined]
        except Exception as exc:
            self._write(self._entry(items[0].op, items[0].params, error=exc))
            raise
        for item, result in zip(items, results, strict=False):
            try:
                params = protocol.fill_refs(item, results)
            except ValueError:  # the provider's side refused the ref: it got the name
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

    def _exchange(self, op: str, params: dict[str, Any], run: Callable[[], Any],
                  encode: Callable[[Any], Any] = protocol.json_safe) -> Any:
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
            if self._derailed is None and self._next < len(self._entries) \
                    and self._entries[self._next][1]["op"] == "close":
                self._next += 1
                self._played[self._check] = self._next

    @property
    def remaining(self) -> int:
        """Exchanges recorded but not played yet (of the checks, in a cassette by check)."""
        if self.by_check:
            return sum(len(e) for e in self._checks.values()) - sum(
                n for name, n in self._played.items() if name is not None)
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
            raise CassetteMismatch(f"cassette {self.path} holds no exchange of check "
                                   f"{self._check} (for {what}): the recorded run did not run "
                                   "it, or it made no request then")
        if self._derailed is not None:
            raise CassetteMismatch(f"cassette {self.path} is out of step with this run since "
                                   f"{self._derailed}; {what} is not played")
        if self._next >= len(self._entries):
            of = f" of check {self._check}" if self._check is not None else ""
            raise CassetteMismatch(f"cassette {self.path} holds no exchange for {what}: all "
                                   f"{len(self._entries)} recorded exchanges{of} were played")
        line, entry = self._entries[self._next]
        if entry["op"] != op or entry["args"] != asked:
            held = protocol.describe(entry["op"], entry["args"])
            difference = _difference(asked, entry["args"]) if entry["op"] == op else ""
            self._derailed = f"line {line} ({what} asked, {held} held)"
            raise CassetteMismatch(f"cassette {self.path} does not hold {what}{difference}: "
                                   f"its next exchange (line {line}) is {held}")
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
                return _difference(asked.get(key, _ABSENT), held.get(key, _ABSENT),
                                   f"{path}.{key}" if path else str(key))
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
                raise ProviderUnavailable(f"cassette {path}: line 1 is not a cassette "
                                          f"header of version {CASSETTE_VERSION}")
            continue
        if not isinstance(message.get("op"), str) or not isinstance(message.get("args"), dict):
            raise ProviderUnavailable(f"cassette {path}, line {number}: an exchange needs "
                                      "'op' and 'args'")
        entries.append((number, message))
    if not header:
        raise ProviderUnavailable(f"cassette {path} is empty")
    return header, entries
