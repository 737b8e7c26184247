"""`conformance agent`: serve one provider to remote harnesses (conformance.remote.protocol).

    conformance agent --provider windows --listen 0.0.0.0:7700 --token-file t   # machine under test
    conformance run --provider remote+tcp://host:7700 --token-file t             # the harness

Each connection gets its own provider instance, created after an authenticated hello and
called from the connection's own thread only (COM-style providers need that affinity). A
watchdog bounds every wait: the hello, each request (idle or slow clients) and each provider
call. Malformed requests are answered with an error and the connection goes on; refusals are
logged to stderr. Without a token the agent only binds a loopback address.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import ipaddress
import json
import logging
import os
import socket
import socketserver
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance.cli.main import memory_size, timeout_seconds
from conformance.provider import Provider, ProviderUnavailable, load
from conformance.remote import protocol
from conformance.remote.protocol import LineReader, MessageTooLarge, ProtocolError, TruncatedMessage

log = logging.getLogger("conformance.remote.agent")

EXIT_OK, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 2, 3
HELLO_LIMIT = 64 << 10  # bytes an unauthenticated peer may make the agent hold


class AgentUsageError(ValueError):
    """A configuration the agent refuses to start with (exit code 2)."""


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
            text = (f"the provider ran out of memory: the worker's limit is "
                    f"{self.memory_limit >> 20} MiB (--worker-memory)")
            return {"kind": "provider", "message": f"MemoryError: {text}",
                    "type": "MemoryError", "text": text}
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
        if os.name == "nt":  # pragma: no cover - Windows only
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
            view = view[os.write(self._out, view):]

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

    def __init__(self, config: AgentConfig, channel: Channel,
                 admission: Admission | None = None):
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
                f"the first message must be a hello: {exc}")
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
            return ('the first message must be a hello: {"hello": '
                    f'{protocol.PROTOCOL_VERSION}, "token": "..."}}')
        version = message["hello"]
        if version != protocol.PROTOCOL_VERSION or isinstance(version, bool):
            return (f"protocol version {json_short(version)} is not supported: this agent "
                    f"speaks version {protocol.PROTOCOL_VERSION}")
        if self.config.token is None:
            return None
        token = message.get("token")
        if token is None:
            return "a token is required: give the harness the agent's token file (--token-file)"
        if not isinstance(token, str) or not hmac.compare_digest(
                token.encode("utf-8", "surrogatepass"), self.config.token.encode("utf-8")):
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
        limits = {"max_message": self.config.max_message,
                  "call_timeout": self.config.call_timeout,
                  "idle_timeout": self.config.idle_timeout}
        name = getattr(self.provider, "name", None) or spec
        self.send({"welcome": protocol.PROTOCOL_VERSION, "provider": str(name),
                   "capabilities": capabilities, "limits": limits,
                   "ops": [*protocol.OPS, *protocol.OPTIONAL_OPS]})
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
            batch = protocol.parse_batch(request_id, params["requests"]) \
                if op == "batch" else None
        except ProtocolError as exc:
            return self._malformed(exc)
        self.requests += 1
        if self.requests > self.config.max_messages:
            self.last_word({"bye": f"over {self.config.max_messages} requests on one "
                                   "connection; reconnect"}, "request limit reached")
            return False
        response = self._run(request_id, op, params) if batch is None else \
            self._run_batch(request_id, batch)
        if response is None:
            return False
        try:
            data = protocol.encode(response)
        except ValueError as exc:  # a result JSON cannot hold even as repr (a cycle)
            data = protocol.encode(protocol.failure(
                request_id, "provider", f"the result of {protocol.describe(op, params)} "
                f"cannot be sent: {exc}"))
        if len(data) > self.config.max_message + 1:
            data = protocol.encode(protocol.failure(
                request_id, "provider", f"the result of {protocol.describe(op, params)} is "
                f"{len(data) - 1} bytes, over the message limit of {self.config.max_message}"))
        return self.send(data) and op != "close"

    def _malformed(self, exc: ProtocolError) -> bool:
        self.errors += 1
        log.warning("%s: malformed request: %s", self.channel.peer, exc)
        if self.errors > self.config.max_errors:
            self.last_word({"bye": f"too many malformed requests ({self.errors})"},
                           "closed: too many malformed requests")
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

    def _run_batch(self, request_id: Any, batch: list[protocol.BatchItem]
                   ) -> dict[str, Any] | None:
        """Run a batch's requests in order, each under the per-call timeout (one watchdog
        armed for the batch, its deadline moved per request), until one stops it (see
        protocol.stops). None when one timed out (the connection is ended)."""
        answers: list[dict[str, Any]] = []
        results: list[Any] = []
        size = 0  # what the answers so far will take at least, in bytes (_least_size)
        limit, watchdog = self.config.call_timeout, self.watchdog
        watchdog.arm(limit, lambda: self._timed_out(request_id, *self._doing))
        for item in batch:
            try:
                params = protocol.fill_refs(item, results) if item.refs or item.int_refs \
                    else item.params
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
                    request_id, "provider", f"the result of a batch of {len(batch)} requests "
                    f"is over the message limit of {self.config.max_message} bytes after "
                    f"{len(answers)} of them ({size} bytes at least); send smaller batches")
            if not answer["ok"]:
                if not item.may_fail:
                    break
            elif (item.expect_id or item.expect_outcome) and protocol.stops(
                    item, protocol.outcome_from_json(result) if item.expect_outcome else result):
                break
        return protocol.ok(request_id, answers) if watchdog.disarm() else None

    def _timed_out(self, request_id: Any, op: str, params: dict[str, Any]) -> None:
        what, limit = protocol.describe(op, params), self.config.call_timeout
        self.stuck_in = what
        self.last_word(protocol.failure(
            request_id, "timeout", f"the provider did not answer {what} within {limit} s; "
            "the agent closes the connection since the provider is stuck"), f"timeout in {what}")

    def _dispatch(self, op: str, params: dict[str, Any]) -> Any:
        provider = self.provider
        assert provider is not None
        if op == "call":
            return protocol.outcome_to_json(provider.call(params["method"], params["args"]),
                                            safe=False)
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
            log.warning("%s: provider.close() raised %s: %s", self.channel.peer,
                        type(exc).__name__, exc)


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


# -- TCP -----------------------------------------------------------------------------------------

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
            oldest = next(iter(self._waiting)) if len(self._waiting) >= self.max_waiting \
                else None
            if oldest is not None:
                del self._waiting[oldest]
            self._waiting[session] = None
        if oldest is not None:
            why = (f"no hello yet, and {self.max_waiting} connections are waiting for one "
                   "(--max-waiting): the longest-waiting gives way to a newcomer")
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
            reason += (f"; {len(stuck)} held by provider calls that never returned: "
                       f"{', '.join(stuck[:3])}{', ...' if len(stuck) > 3 else ''}")
        return reason

    def leave(self, session: Session) -> None:
        with self._lock:
            self._waiting.pop(session, None)
            self._admitted.discard(session)

    def counts(self) -> tuple[int, int]:
        """(waiting for a hello, admitted)."""
        with self._lock:
            return len(self._waiting), len(self._admitted)


class AgentServer(socketserver.ThreadingTCPServer):
    """A thread per connection, each with its own Session and provider."""

    daemon_threads = True
    allow_reuse_address = os.name == "posix"  # on Windows it would let others take the port
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], config: AgentConfig):
        self.address_family = _family(address[0])
        self.config = config
        self.admission = Admission(config.max_connections, config.max_waiting)
        super().__init__(address, _Handler)

    @property
    def address(self) -> str:
        host, port = self.server_address[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Handler(socketserver.BaseRequestHandler):
    server: AgentServer

    def handle(self) -> None:
        host, port = self.client_address[:2]
        session = Session(self.server.config, SocketChannel(self.request, f"{host}:{port}"),
                          self.server.admission)
        self.server.admission.arrive(session)
        session.run()


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def make_tcp_server(config: AgentConfig, host: str = "127.0.0.1", port: int = 0) -> AgentServer:
    """Bind (port 0: any free port); refuses a non-loopback address without a token."""
    if host == "localhost":
        host = "127.0.0.1"
    server = AgentServer((host, port), config)
    bound = server.server_address[0]
    if config.token is None and not is_loopback(bound):
        server.server_close()
        raise AgentUsageError(
            f"refusing to listen on {host or 'every interface'} without a token: anyone who "
            "can reach it could drive the provider; give --token-file, or listen on loopback "
            "(127.0.0.1, ::1)")
    return server


def serve_tcp(provider_spec: str, host: str, port: int, token: str | None,
              call_timeout: float | None, **limits: Any) -> None:
    """Serve until interrupted; prints `listening on HOST:PORT` once bound."""
    _serve_forever(make_tcp_server(AgentConfig(provider_spec, token, call_timeout, **limits),
                                   host, port))


def _serve_forever(server: AgentServer) -> None:
    print(f"listening on {server.address}", flush=True)
    log.info("serving provider %s on %s (token %s)", server.config.provider_spec, server.address,
             "required" if server.config.token else "not required: loopback only")
    try:
        server.serve_forever()
    finally:
        server.server_close()


def serve_stdio(provider_spec: str, token: str | None, call_timeout: float | None,
                **limits: Any) -> None:
    """Serve one connection on stdin/stdout; stdout carries nothing but the protocol."""
    limits.setdefault("idle_timeout", None)  # the parent process owns this connection
    limits.setdefault("hello_timeout", None)
    Session(AgentConfig(provider_spec, token, call_timeout, **limits), StdioChannel()).run()


# -- command line --------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `conformance agent` (shared by cli/main.py and
    `python -m conformance.remote.agent`)."""
    parser.add_argument("--provider", required=True,
                        help="the provider to serve: a name, pkg.module:Class or file.py:Class")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--listen", metavar="HOST:PORT",
                       help="serve over TCP (port 0: any free port; printed on startup)")
    where.add_argument("--stdio", action="store_true",
                       help="serve one connection on stdin/stdout")
    parser.add_argument("--token-file", help="file holding the token clients must present "
                                             "(required to listen on a non-loopback address)")
    parser.add_argument("--call-timeout", type=_seconds, default=60.0,
                        help="seconds a provider call may take (default 60)")
    parser.add_argument("--idle-timeout", type=_seconds, default=300.0,
                        help="seconds a TCP client has to send each complete request "
                             "(default 300)")
    parser.add_argument("--max-message", type=int, default=protocol.MAX_MESSAGE,
                        metavar="BYTES", help=f"longest message (default {protocol.MAX_MESSAGE})")
    parser.add_argument("--max-connections", type=int, default=64,
                        help="simultaneous TCP connections past their hello, each held until "
                             "its provider call returns (default 64)")
    parser.add_argument("--max-waiting", type=int, default=256,
                        help="TCP connections waiting for their hello; past it the "
                             "longest-waiting is dropped for a newcomer (default 256)")
    parser.add_argument("--memory-limit", type=memory_size, default=0, metavar="SIZE",
                        help="address space this process may use (512M, 2G; POSIX only); a "
                             "provider call past it fails saying so (default 0: no limit)")
    parser.add_argument("--log-level", default="INFO",
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"))


def run_args(args: argparse.Namespace) -> int:
    """Run the agent from parsed options; returns the exit code."""
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s conformance-agent %(levelname)s %(message)s")
    try:
        token = read_token(args.token_file) if args.token_file else None
        if args.max_message < 64:
            raise AgentUsageError("--max-message must be at least 64 bytes")
        if min(args.max_connections, args.max_waiting) < 1:
            raise AgentUsageError("--max-connections and --max-waiting must be at least 1")
        limit_memory(args.memory_limit)
        if args.stdio:
            serve_stdio(args.provider, token, args.call_timeout, max_message=args.max_message,
                        memory_limit=args.memory_limit)
            return EXIT_OK
        host, port = parse_listen(args.listen)
        _check_provider(args.provider)
        try:
            server = make_tcp_server(
                AgentConfig(args.provider, token, args.call_timeout, max_message=args.max_message,
                            idle_timeout=args.idle_timeout, max_connections=args.max_connections,
                            max_waiting=args.max_waiting, memory_limit=args.memory_limit),
                host, port)
        except OSError as exc:
            raise AgentUsageError(f"cannot listen on {args.listen}: {exc}") from None
        _serve_forever(server)
    except AgentUsageError as exc:
        print(f"conformance agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ProviderUnavailable as exc:
        print(f"conformance agent: provider unavailable: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="conformance agent",
                                     description="Serve a provider to remote harnesses.")
    add_arguments(parser)
    return run_args(parser.parse_args(argv))


def _check_provider(spec: str) -> None:
    """Fail at startup, not at the first connection, when the provider cannot load."""
    provider = load(spec)
    with contextlib.suppress(Exception):
        provider.close()


def limit_memory(size: int) -> None:
    """Cap this process's address space, so a provider eating memory gets a MemoryError the
    agent reports instead of taking the machine (RLIMIT_AS; not on Windows)."""
    if not size:
        return
    try:
        import resource
    except ImportError:
        raise AgentUsageError("--memory-limit needs a POSIX system (resource limits)") from None
    resource.setrlimit(resource.RLIMIT_AS, (size, size))


def _seconds(text: str) -> float | None:
    """A timeout option, checked as `conformance run` checks its own; 0 (no limit) is None."""
    return timeout_seconds(text) or None


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT, [V6]:PORT, :PORT or PORT (loopback when the host is left out)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        number = int(port)
    except ValueError:
        raise AgentUsageError(f"--listen {text!r}: expected HOST:PORT") from None
    if not 0 <= number <= 65535:
        raise AgentUsageError(f"--listen {text!r}: port out of range")
    return host or "127.0.0.1", number


def read_token(path: str) -> str:
    """The token in a file (surrounding whitespace ignored); warns when others can read it."""
    file = Path(path)
    try:
        token = file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise AgentUsageError(f"cannot read token file {path}: {exc}") from None
    if not token:
        raise AgentUsageError(f"token file {path} is empty")
    if os.name == "posix" and file.stat().st_mode & 0o077:
        log.warning("token file %s is readable by other users (chmod 600 it)", path)
    return token


if __name__ == "__main__":
    sys.exit(main())
