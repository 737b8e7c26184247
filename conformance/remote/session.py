"""One connection of `conformance agent`: its byte stream (`Channel`), the hello and the
requests (`Session`, each connection with its own provider), and who may hold one of the
agent's threads (`Admission`). The agent's servers (conformance.remote.agent) make them.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import socket
import sys
import threading
from dataclasses import dataclass
from typing import Any

from conformance.engine.batch import BatchItem, fill_refs, stops
from conformance.provider import Provider, ProviderUnavailable, load
from conformance.remote import protocol
from conformance.remote.protocol import LineReader, MessageTooLarge, ProtocolError, TruncatedMessage

log = logging.getLogger("conformance.remote.agent")

HELLO_LIMIT = 64 << 10  # bytes an unauthenticated peer may make the agent hold


@dataclass(frozen=True)
class AgentConfig:
    """What every connection of one agent shares: the provider to create and the limits."""

    provider_spec: str
    token: str | None = None
    call_timeout: float | None = 60.0
    max_message: int = protocol.MAX_MESSAGE
    idle_timeout: float | None = 300.0  # a whole request must arrive within this
    hello_timeout: float | None = 10.0
    max_errors: int = 100  # malformed requests before the connection is closed
    max_messages: int = 50_000_000  # requests per connection
    max_connections: int = 64  # connections past their hello, each until its provider returns
    max_waiting: int = 256  # connections before their hello; the oldest gives way to a newcomer
    memory_limit: int = 0  # the process's address space (bytes), 0 for none

    def error(self, exc: BaseException) -> dict[str, Any]:
        """How a provider's exception travels; running out of memory under the limit says so."""
        if isinstance(exc, MemoryError) and self.memory_limit:
            text = (
                f"the provider ran out of memory: the worker's limit is "
                f"{self.memory_limit >> 20} MiB (--worker-memory)"
            )
            return {
                "kind": "provider",
                "message": f"MemoryError: {text}",
                "type": "MemoryError",
                "text": text,
            }
        return protocol.error_from_exception(exc)

    def poll(self) -> float:
        """The watchdog's period: a tenth of the shortest timeout, within [20 ms, 0.5 s]."""
        timeouts = [t for t in (self.call_timeout, self.idle_timeout, self.hello_timeout) if t]
        return min(0.5, max(0.02, min(timeouts, default=5.0) / 10))


# -- channels: the byte stream of one connection ---------------------------------------------------


class Channel:
    """A connection's byte stream; `abort` unblocks a reader from another thread."""

    peer = "?"

    def recv(self, size: int) -> bytes:
        raise NotImplementedError

    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class SocketChannel(Channel):
    def __init__(self, sock: socket.socket, peer: str):
        self.sock = sock
        self.peer = peer
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def recv(self, size: int) -> bytes:
        return self.sock.recv(size)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.abort()
        self.sock.close()


class StdioChannel(Channel):
    """stdin/stdout of the agent process; fd 1 is moved aside so stray prints go to stderr."""

    peer = "stdio"

    def __init__(self) -> None:
        self._in = sys.stdin.fileno()
        self._out = os.dup(sys.stdout.fileno())
        sys.stdout.flush()
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
        sys.stdout = sys.stderr
        if sys.platform == "win32":  # pragma: no cover - Windows only
            import msvcrt

            msvcrt.setmode(self._in, os.O_BINARY)
            msvcrt.setmode(self._out, os.O_BINARY)

    def recv(self, size: int) -> bytes:
        return os.read(self._in, size)

    def send(self, data: bytes) -> None:
        written = os.write(self._out, data)
        if written == len(data):  # the usual case: one write
            return
        view = memoryview(data)[written:]
        while view:
            view = view[os.write(self._out, view) :]

    def abort(self) -> None:
        # The reader cannot be unblocked portably and the provider may be stuck: a stdio
        # agent serves one connection, so it ends the process once its last word is sent.
        logging.shutdown()
        os._exit(1)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._out)


# -- one connection ----------------------------------------------------------------------------


class Session:
    """One connection: hello, then requests until close, end of stream or a limit."""

    def __init__(self, config: AgentConfig, channel: Channel, admission: Admission | None = None):
        self.config = config
        self.channel = channel
        self.reader = LineReader(channel.recv, config.max_message)
        self.watchdog = protocol.Watchdog(config.poll())
        self.provider: Provider | None = None
        self._write_lock = threading.Lock()
        self._finished = False  # nothing more may be written (timeout, bye, refusal)
        self.admission = admission
        self.stuck_in: str | None = None  # the provider call that outlived the call timeout
        self.errors = 0
        self.requests = 0
        self._doing: tuple[str, dict[str, Any]] = ("batch", {})  # the batch request running

    def run(self) -> None:
        log.info("connection from %s", self.channel.peer)
        try:
            if self._handshake():
                self._serve()
        except OSError as exc:
            if not self._finished:
                log.info("connection from %s lost: %s", self.channel.peer, exc)
        finally:
            self.watchdog.stop()
            self._close_provider()  # this thread is free, so the provider is no longer busy
            with contextlib.suppress(OSError):
                self.channel.close()
            if self.admission is not None:  # only now: a stuck provider call keeps its slot
                self.admission.leave(self)

    # -- writing, and ending the connection from the watchdog --
    def send(self, message: dict[str, Any] | bytes) -> bool:
        data = message if isinstance(message, bytes) else protocol.encode(message)
        with self._write_lock:
            if self._finished:
                return False
            self.channel.send(data)
            return True

    def last_word(self, message: dict[str, Any], why: str) -> None:
        """Send a final message, close the stream, log why; later writes are dropped."""
        with self._write_lock:
            if self._finished:
                return
            self._finished = True
            with contextlib.suppress(OSError):
                self.channel.send(protocol.encode(message))
        log.warning("%s: %s", self.channel.peer, why)
        self.channel.abort()

    def _wait(self, seconds: float | None, message: dict[str, Any], why: str) -> None:
        """Arm the watchdog: past `seconds`, send `message` and end the connection."""
        self.watchdog.arm(seconds, lambda: self.last_word(message, why))

    # -- hello --
    def _handshake(self) -> bool:
        why = f"no hello within {self.config.hello_timeout} s"
        self._wait(self.config.hello_timeout, {"refused": why}, f"refused: {why}")
        self.reader.limit = min(HELLO_LIMIT, self.config.max_message)
        try:
            line = self.reader.read_line()
            message = protocol.decode(line) if line is not None else None
        except ProtocolError as exc:
            return self.watchdog.disarm() and self._refuse(
                f"the first message must be a hello: {exc}"
            )
        finally:
            self.reader.limit = self.config.max_message
        if not self.watchdog.disarm():
            return False  # the hello timed out and was refused already
        if message is None:
            log.info("%s closed the connection before the hello", self.channel.peer)
            return False
        reason = self._check_hello(message)
        if reason is None and self.admission is not None:
            reason = self.admission.admit(self)
        if reason:
            return self._refuse(reason)
        return self._welcome()

    def _check_hello(self, message: dict[str, Any]) -> str | None:
        """Why the hello is refused, or None."""
        if "hello" not in message:
            return (
                'the first message must be a hello: {"hello": '
                f'{protocol.PROTOCOL_VERSION}, "token": "..."}}'
            )
        version = message["hello"]
        if version != protocol.PROTOCOL_VERSION or isinstance(version, bool):
            return (
                f"protocol version {json_short(version)} is not supported: this agent "
                f"speaks version {protocol.PROTOCOL_VERSION}"
            )
        if self.config.token is None:
            return None
        token = message.get("token")
        if token is None:
            return "a token is required: give the harness the agent's token file (--token-file)"
        if not isinstance(token, str) or not hmac.compare_digest(
            token.encode("utf-8", "surrogatepass"), self.config.token.encode("utf-8")
        ):
            return "wrong token"
        return None

    def _refuse(self, reason: str) -> bool:
        self.last_word({"refused": reason}, f"refused: {reason}")
        return False

    def _welcome(self) -> bool:
        spec = self.config.provider_spec
        why = f"provider {spec!r} did not start within {self.config.call_timeout} s"
        self._wait(self.config.call_timeout, {"refused": why}, why)
        reason = None
        try:
            self.provider = load(spec)
            capabilities = protocol.json_safe(self.provider.capabilities())
        except ProviderUnavailable as exc:
            reason = f"provider unavailable: {exc}"
        except Exception as exc:
            reason = f"provider unavailable: capabilities() raised {type(exc).__name__}: {exc}"
        if not self.watchdog.disarm():
            return False
        if reason is not None:
            return self._refuse(reason)
        limits = {
            "max_message": self.config.max_message,
            "call_timeout": self.config.call_timeout,
            "idle_timeout": self.config.idle_timeout,
        }
        name = getattr(self.provider, "name", None) or spec
        self.send(
            {
                "welcome": protocol.PROTOCOL_VERSION,
                "provider": str(name),
                "capabilities": capabilities,
                "limits": limits,
                "ops": [*protocol.OPS, *protocol.OPTIONAL_OPS],
            }
        )
        log.info("%s: welcome, provider %s", self.channel.peer, name)
        return True

    # -- requests --
    def _serve(self) -> None:
        idle = self.config.idle_timeout
        bye = {"bye": f"no complete request within {idle} s"}
        why = f"closed: {bye['bye']}"

        def on_idle() -> None:
            self.last_word(bye, why)

        while True:
            if idle is not None:  # else nothing to arm: a stdio agent waits for its parent
                self.watchdog.arm(idle, on_idle)
            try:
                line: bytes | ProtocolError | None = self.reader.read_line()
            except MessageTooLarge as exc:
                line = exc
            except TruncatedMessage as exc:
                if self.watchdog.disarm():
                    self.last_word(protocol.failure(None, "protocol", str(exc)), str(exc))
                return
            if idle is not None and not self.watchdog.disarm():
                return  # the watchdog ended the connection
            if line is None:
                log.info("%s closed the connection", self.channel.peer)
                return
            if not self._handle(line):
                return

    def _handle(self, line: bytes | ProtocolError) -> bool:
        """Answer one line; False once the connection must end."""
        try:
            if isinstance(line, ProtocolError):
                raise line
            if not line or line.isspace():
                return True
            request_id, op, params = protocol.parse_request(protocol.decode(line))
            batch = protocol.parse_batch(request_id, params["requests"]) if op == "batch" else None
        except ProtocolError as exc:
            return self._malformed(exc)
        self.requests += 1
        if self.requests > self.config.max_messages:
            self.last_word(
                {"bye": f"over {self.config.max_messages} requests on one connection; reconnect"},
                "request limit reached",
            )
            return False
        response = (
            self._run(request_id, op, params)
            if batch is None
            else self._run_batch(request_id, batch)
        )
        if response is None:
            return False
        try:
            data = protocol.encode(response)
        except ValueError as exc:  # a result JSON cannot hold even as repr (a cycle)
            data = protocol.encode(
                protocol.failure(
                    request_id,
                    "provider",
                    f"the result of {protocol.describe(op, params)} cannot be sent: {exc}",
                )
            )
        if len(data) > self.config.max_message + 1:
            data = protocol.encode(
                protocol.failure(
                    request_id,
                    "provider",
                    f"the result of {protocol.describe(op, params)} is "
                    f"{len(data) - 1} bytes, over the message limit of {self.config.max_message}",
                )
            )
        return self.send(data) and op != "close"

    def _malformed(self, exc: ProtocolError) -> bool:
        self.errors += 1
        log.warning("%s: malformed request: %s", self.channel.peer, exc)
        if self.errors > self.config.max_errors:
            self.last_word(
                {"bye": f"too many malformed requests ({self.errors})"},
                "closed: too many malformed requests",
            )
            return False
        return self.send(protocol.failure(exc.request_id, "protocol", str(exc)))

    def _run(self, request_id: Any, op: str, params: dict[str, Any]) -> dict[str, Any] | None:
        """Call the provider under the per-call timeout; None when it timed out."""
        self.watchdog.arm(self.config.call_timeout, lambda: self._timed_out(request_id, op, params))
        try:
            response = protocol.ok(request_id, self._dispatch(op, params))
        except (Exception, SystemExit) as exc:
            response = protocol.failure(request_id, **self.config.error(exc))
        return response if self.watchdog.disarm() else None

    def _run_batch(self, request_id: Any, batch: list[BatchItem]) -> dict[str, Any] | None:
        """Run a batch's requests in order, each under the per-call timeout (one watchdog
        armed for the batch, its deadline moved per request), until one stops it (see
        conformance.engine.batch.stops). None when one timed out (the connection is ended)."""
        answers: list[dict[str, Any]] = []
        results: list[Any] = []
        size = 0  # what the answers so far will take at least, in bytes (_least_size)
        limit, watchdog = self.config.call_timeout, self.watchdog
        watchdog.arm(limit, lambda: self._timed_out(request_id, *self._doing))
        for item in batch:
            try:
                params = fill_refs(item, results) if item.refs or item.int_refs else item.params
            except ValueError as exc:  # a ref to no id, or to no place in the params
                self.errors += 1
                answers.append({"ok": False, "error": {"kind": "protocol", "message": str(exc)}})
                break
            self.requests += 1
            self._doing = (item.op, params)
            watchdog.extend(limit)
            try:
                answer = {"ok": True, "result": self._dispatch(item.op, params)}
            except (Exception, SystemExit) as exc:
                answer = {"ok": False, "error": self.config.error(exc)}
            if watchdog.fired:
                return None
            answers.append(answer)
            result = answer.get("result")
            results.append(result)
            size += _least_size(result)
            if size > self.config.max_message:  # stop the work now: the answer cannot be sent
                watchdog.disarm()
                return protocol.failure(
                    request_id,
                    "provider",
                    f"the result of a batch of {len(batch)} requests "
                    f"is over the message limit of {self.config.max_message} bytes after "
                    f"{len(answers)} of them ({size} bytes at least); send smaller batches",
                )
            if not answer["ok"]:
                if not item.may_fail:
                    break
            elif (item.expect_id or item.expect_outcome) and stops(
                item, protocol.outcome_from_json(result) if item.expect_outcome else result
            ):
                break
        return protocol.ok(request_id, answers) if watchdog.disarm() else None

    def _timed_out(self, request_id: Any, op: str, params: dict[str, Any]) -> None:
        what, limit = protocol.describe(op, params), self.config.call_timeout
        self.stuck_in = what
        self.last_word(
            protocol.failure(
                request_id,
                "timeout",
                f"the provider did not answer {what} within {limit} s; "
                "the agent closes the connection since the provider is stuck",
            ),
            f"timeout in {what}",
        )

    def _dispatch(self, op: str, params: dict[str, Any]) -> Any:
        provider = self.provider
        assert provider is not None
        if op == "call":
            return protocol.outcome_to_json(
                provider.call(params["method"], params["args"]), safe=False
            )
        if op == "setup":
            return protocol.json_safe(provider.setup(params["step"]))  # an id, checked here
        if op == "observe":  # made JSON-safe by `protocol.encode` only if it has to be
            return provider.observe(params["collection"])
        if op == "capabilities":
            return protocol.json_safe(provider.capabilities())
        if op == "reset":
            provider.reset()
            return None
        self.provider = None  # close
        provider.close()
        return None

    def _close_provider(self) -> None:
        provider, self.provider = self.provider, None
        try:
            if provider is not None:
                provider.close()
        except Exception as exc:
            log.warning(
                "%s: provider.close() raised %s: %s", self.channel.peer, type(exc).__name__, exc
            )


def _least_size(result: Any) -> int:
    """A cheap estimate of a result's encoded size that a list of like rows (what `observe`
    answers) does not exceed: its length times the smaller of its first and last rows' sizes.
    A batch is stopped once its answers pass the message limit on this estimate, instead of
    running to the end and building an answer that is refused anyway."""
    if type(result) is not list or len(result) < 2:
        return 0
    try:
        row = min(len(protocol.encode({"r": result[0]})), len(protocol.encode({"r": result[-1]})))
    except ValueError:
        return 0
    return (row - 7) * len(result)  # {"r": } and the newline are not the row's


def json_short(value: Any) -> str:
    return json.dumps(value, default=repr)[:60]


# -- admission ----------------------------------------------------------------------------------


class Admission:
    """Who may hold one of the agent's threads, so that no client can starve the others.

    Before its hello a connection is a stranger: at most `max_waiting` of them wait, and a
    newcomer past that ends the longest-waiting one, so slow unauthenticated clients cannot
    keep a legitimate harness out (each also has `hello_timeout`). Past its hello a connection
    holds one of `max_connections` slots until its thread is free again: a provider call that
    outlived the call timeout keeps its slot, so hung calls cannot pile up threads beyond
    the limit, and a refusal names the calls that hold them."""

    def __init__(self, max_connections: int, max_waiting: int):
        self.max_connections, self.max_waiting = max_connections, max_waiting
        self._lock = threading.Lock()
        self._waiting: dict[Session, None] = {}  # in order of arrival
        self._admitted: set[Session] = set()

    def arrive(self, session: Session) -> None:
        """A new connection waits for its hello; the oldest stranger gives way if full."""
        with self._lock:
            oldest = next(iter(self._waiting)) if len(self._waiting) >= self.max_waiting else None
            if oldest is not None:
                del self._waiting[oldest]
            self._waiting[session] = None
        if oldest is not None:
            why = (
                f"no hello yet, and {self.max_waiting} connections are waiting for one "
                "(--max-waiting): the longest-waiting gives way to a newcomer"
            )
            oldest.last_word({"refused": why}, f"refused: {why}")

    def admit(self, session: Session) -> str | None:
        """Take a slot for an authenticated connection; why not, when all are held."""
        with self._lock:
            self._waiting.pop(session, None)
            if len(self._admitted) < self.max_connections:
                self._admitted.add(session)
                return None
            stuck = sorted(s.stuck_in for s in self._admitted if s.stuck_in)
        reason = f"too many connections (limit {self.max_connections})"
        if stuck:
            reason += (
                f"; {len(stuck)} held by provider calls that never returned: "
                f"{', '.join(stuck[:3])}{', ...' if len(stuck) > 3 else ''}"
            )
        return reason

    def leave(self, session: Session) -> None:
        with self._lock:
            self._waiting.pop(session, None)
            self._admitted.discard(session)

    def counts(self) -> tuple[int, int]:
        """(waiting for a hello, admitted)."""
        with self._lock:
            return len(self._waiting), len(self._admitted)
