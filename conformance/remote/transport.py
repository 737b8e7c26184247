"""The byte streams from the harness to an agent: a TCP connection, or an agent process's
stdin and stdout (`remote+stdio:COMMAND`, the harness's own worker by default), each with a
watchdog that bounds every wait for an answer.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import shlex
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from typing import IO
from urllib.parse import urlsplit

from conformance.provider import ProviderUnavailable
from conformance.remote.protocol import Watchdog

log = logging.getLogger("conformance.remote.client")

TCP_SCHEME = "remote+tcp://"
STDIO_SCHEME = "remote+stdio:"
STDERR_CHUNK = 65536  # bytes read from an agent's stderr at a time


class Transport:
    """A blocking byte stream to one agent, with a watchdog that bounds each wait.

    Blocking I/O plus a watchdog that interrupts the stream costs one system call per read
    or write; a socket timeout would add a poll() to each.
    """

    where = "?"

    def __init__(self) -> None:
        self._watchdog = Watchdog(poll=0.05)
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


class TcpTransport(Transport):
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


class StdioTransport(Transport):
    """An agent process on pipes; an overdue answer kills it."""

    def __init__(self, argv: list[str], connect_timeout: float):
        super().__init__()
        self.where = f"`{shlex.join(argv)}`"
        # its own process group (POSIX): what the provider forks goes with the worker, so a
        # child holding the pipes cannot outlive a timeout or the run
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            start_new_session=os.name == "posix",
        )
        assert self.proc.stdin and self.proc.stdout and self.proc.stderr
        self._stdin: IO[bytes] = self.proc.stdin
        self._stdout = self.proc.stdout.fileno()
        self._tail: collections.deque[str] = collections.deque(maxlen=5)
        self._drain = threading.Thread(
            target=self._read_stderr,
            args=(self.proc.stderr,),
            name="conformance-agent-stderr",
            daemon=True,
        )
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
        for raw in lines if logging_ else lines[-(self._tail.maxlen or 1) :]:
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
            if self.proc.stdout is not None:  # (a pipe: the worker's answers)
                self.proc.stdout.close()

    def why_ended(self) -> str:
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return ""
        self._drain.join(timeout=1)
        said = f": {self._tail[-1]}" if self._tail else ""
        return f" (the agent process exited with code {code}{said})"


def transport_factory(spec: str) -> Callable[[float], Transport]:
    """How to open a new stream for a spec; a malformed spec is ProviderUnavailable now."""
    if spec.startswith(TCP_SCHEME):
        try:
            parts = urlsplit(spec)
            host, port = parts.hostname, parts.port
        except ValueError as exc:
            raise ProviderUnavailable(f"{spec!r}: {exc}") from None
        if not host or port is None:
            raise ProviderUnavailable(f"{spec!r}: expected {TCP_SCHEME}HOST:PORT")
        return lambda timeout: TcpTransport(host, port, timeout)
    try:
        argv = shlex.split(spec[len(STDIO_SCHEME) :], posix=os.name != "nt")
    except ValueError as exc:
        raise ProviderUnavailable(f"{spec!r}: {exc}") from None
    if not argv:
        raise ProviderUnavailable(f"{spec!r}: expected {STDIO_SCHEME}COMMAND")
    return lambda timeout: StdioTransport(argv, timeout)
