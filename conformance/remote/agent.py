"""`conformance agent`: serve one provider to remote harnesses (conformance.remote.protocol).

    conformance agent --provider windows --listen 0.0.0.0:7700 --token-file t   # machine under test
    conformance run --provider remote+tcp://host:7700 --token-file t             # the harness

Each connection gets its own provider instance, created after an authenticated hello and
called from the connection's own thread only (COM-style providers need that affinity). A
watchdog bounds every wait: the hello, each request (idle or slow clients) and each provider
call. Malformed requests are answered with an error and the connection goes on; refusals are
logged to stderr. Without a token the agent only binds a loopback address. One connection
is a conformance.remote.session `Session`; this module serves them (TCP, stdio) and is the
agent's command line.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import socket
import socketserver
import sys
from pathlib import Path
from typing import Any, cast

from conformance.errors import UsageError
from conformance.provider import ProviderUnavailable, load
from conformance.remote import protocol
from conformance.remote.session import (
    Admission,
    AgentConfig,
    Session,
    SocketChannel,
    StdioChannel,
)
from conformance.units import memory_size, timeout_seconds

log = logging.getLogger("conformance.remote.agent")

EXIT_OK, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 2, 3


class AgentUsageError(UsageError, ValueError):
    """A configuration the agent refuses to start with (exit code 2)."""


# -- TCP -----------------------------------------------------------------------------------------


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
        host, port = cast("tuple[str, int]", self.server_address[:2])  # an AF_INET(6) address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Handler(socketserver.BaseRequestHandler):
    server: AgentServer

    def handle(self) -> None:
        host, port = self.client_address[:2]
        session = Session(
            self.server.config, SocketChannel(self.request, f"{host}:{port}"), self.server.admission
        )
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
    bound = cast(str, server.server_address[0])  # an AF_INET(6) address
    if config.token is None and not is_loopback(bound):
        server.server_close()
        raise AgentUsageError(
            f"refusing to listen on {host or 'every interface'} without a token: anyone who "
            "can reach it could drive the provider; give --token-file, or listen on loopback "
            "(127.0.0.1, ::1)"
        )
    return server


def _serve_forever(server: AgentServer) -> None:
    print(f"listening on {server.address}", flush=True)
    log.info(
        "serving provider %s on %s (token %s)",
        server.config.provider_spec,
        server.address,
        "required" if server.config.token else "not required: loopback only",
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()


def serve_stdio(
    provider_spec: str, token: str | None, call_timeout: float | None, **limits: Any
) -> None:
    """Serve one connection on stdin/stdout; stdout carries nothing but the protocol."""
    limits.setdefault("idle_timeout", None)  # the parent process owns this connection
    limits.setdefault("hello_timeout", None)
    Session(AgentConfig(provider_spec, token, call_timeout, **limits), StdioChannel()).run()


# -- command line --------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `conformance agent` (shared by cli/main.py and
    `python -m conformance.remote.agent`)."""
    parser.add_argument(
        "--provider",
        required=True,
        help="the provider to serve: a name, pkg.module:Class or file.py:Class",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="serve over TCP (port 0: any free port; printed on startup)",
    )
    where.add_argument("--stdio", action="store_true", help="serve one connection on stdin/stdout")
    parser.add_argument(
        "--token-file",
        help="file holding the token clients must present "
        "(required to listen on a non-loopback address)",
    )
    parser.add_argument(
        "--call-timeout",
        type=_seconds,
        default=60.0,
        help="seconds a provider call may take (default 60)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=_seconds,
        default=300.0,
        help="seconds a TCP client has to send each complete request (default 300)",
    )
    parser.add_argument(
        "--max-message",
        type=int,
        default=protocol.MAX_MESSAGE,
        metavar="BYTES",
        help=f"longest message (default {protocol.MAX_MESSAGE})",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=64,
        help="simultaneous TCP connections past their hello, each held until "
        "its provider call returns (default 64)",
    )
    parser.add_argument(
        "--max-waiting",
        type=int,
        default=256,
        help="TCP connections waiting for their hello; past it the "
        "longest-waiting is dropped for a newcomer (default 256)",
    )
    parser.add_argument(
        "--memory-limit",
        type=memory_size,
        default=0,
        metavar="SIZE",
        help="address space this process may use (512M, 2G; POSIX only); a "
        "provider call past it fails saying so (default 0: no limit)",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR")
    )


def run_args(args: argparse.Namespace) -> int:
    """Run the agent from parsed options; returns the exit code."""
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s conformance-agent %(levelname)s %(message)s",
    )
    try:
        token = read_token(args.token_file) if args.token_file else None
        if args.max_message < 64:
            raise AgentUsageError("--max-message must be at least 64 bytes")
        if min(args.max_connections, args.max_waiting) < 1:
            raise AgentUsageError("--max-connections and --max-waiting must be at least 1")
        limit_memory(args.memory_limit)
        if args.stdio:
            serve_stdio(
                args.provider,
                token,
                args.call_timeout,
                max_message=args.max_message,
                memory_limit=args.memory_limit,
            )
            return EXIT_OK
        host, port = parse_listen(args.listen)
        _check_provider(args.provider)
        try:
            server = make_tcp_server(
                AgentConfig(
                    args.provider,
                    token,
                    args.call_timeout,
                    max_message=args.max_message,
                    idle_timeout=args.idle_timeout,
                    max_connections=args.max_connections,
                    max_waiting=args.max_waiting,
                    memory_limit=args.memory_limit,
                ),
                host,
                port,
            )
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
    parser = argparse.ArgumentParser(
        prog="conformance agent", description="Serve a provider to remote harnesses."
    )
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
