"""The agent, the remote provider, recording and replay.

The suite runs through a real `conformance agent` process (TCP on 127.0.0.1, port 0, and
stdio) and must give the verdicts it gives in-process. Remote providers reach `conformance
run` through a provider file written to tmp_path (`shim.py:Class`), the way a vendor's
wrapper would. The hardening tests speak raw bytes to an agent served from a thread.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conformance_providers.reference import ReferenceProvider
from support import catalog_parsed_once, verdicts

from conformance.cli import main
from conformance.engine.world import _guard
from conformance.provider import Outcome, ProviderUnavailable, Unsupported
from conformance.remote import agent, protocol
from conformance.remote.agent import AgentConfig, AgentServer, make_tcp_server
from conformance.remote.cassette import (
    CassetteMismatch,
    CassetteProvider,
    RecordingProvider,
    open_cassette,
)
from conformance.remote.client import RemoteProvider, open_remote
from conformance.remote.protocol import (
    LineReader,
    MessageTooLarge,
    ProtocolError,
    RemoteProviderError,
    TruncatedMessage,
)

LOGOUT = "IVdsIscsiInitiatorAdapter::LogoutFromTarget"
AGENT = [sys.executable, "-m", "conformance.remote.agent", "--log-level", "WARNING"]
TOKEN = "s3cret-token-for-tests"

# Providers the agent serves in these tests; written to tmp_path, loaded as file.py:Class.
TEST_PROVIDERS = f"""
import os, sys, threading
from conformance_providers.reference import ReferenceProvider
LOGOUT = {LOGOUT!r}

class Hang(ReferenceProvider):
    def call(self, method_id, args):
        if method_id == LOGOUT:
            threading.Event().wait(10)
        return super().call(method_id, args)

class Raises(ReferenceProvider):
    def call(self, method_id, args):
        if method_id == LOGOUT:
            raise ValueError("bad id " + repr(args.get("targetId")))
        return super().call(method_id, args)

class Dies(ReferenceProvider):
    def call(self, method_id, args):
        if method_id == LOGOUT:
            os._exit(3)
        return super().call(method_id, args)

class Chatty(ReferenceProvider):
    def reset(self):
        print("resetting", flush=True)  # must not reach the protocol stream
        super().reset()
"""


# -- helpers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("agent")
    (folder / "test_providers.py").write_text(TEST_PROVIDERS, encoding="utf-8")
    (folder / "token").write_text(TOKEN + "\n", encoding="utf-8")
    (folder / "wrong-token").write_text("not-the-token\n", encoding="utf-8")
    return folder


def provider_in(workdir: Path, name: str) -> str:
    """The --provider value of a class of TEST_PROVIDERS."""
    return f"{workdir / 'test_providers.py'}:{name}"


@contextlib.contextmanager
def served(config: AgentConfig) -> Iterator[AgentServer]:
    """An agent on 127.0.0.1:<free port>, served from a thread for the test's duration."""
    server = make_tcp_server(config)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def agent_process() -> Iterator[str]:
    """`conformance agent --provider reference --listen 127.0.0.1:0` as a process: its address."""
    proc = subprocess.Popen(
        [*AGENT, "--provider", "reference", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("listening on 127.0.0.1:"), line
    yield line.split()[-1]
    proc.terminate()
    proc.wait(timeout=10)


class Raw:
    """A client speaking bytes to an agent, to send what a well-behaved harness never would."""

    def __init__(self, server: AgentServer):
        self.sock = socket.create_connection(server.server_address[:2], timeout=5)
        self.reader = LineReader(self.sock.recv, 1 << 22)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> dict[str, Any] | None:
        line = self.reader.read_line()
        return None if line is None else json.loads(line)

    def ask(self, data: bytes | dict[str, Any]) -> dict[str, Any] | None:
        self.send(data if isinstance(data, bytes) else protocol.encode(data))
        return self.read()

    def hello(self, token: str | None = TOKEN) -> dict[str, Any] | None:
        return self.ask(protocol.hello(token))

    def close(self) -> None:
        self.sock.close()


def still_serving(server: AgentServer, token: str | None = TOKEN) -> None:
    """A new, well-behaved client gets a welcome and answers."""
    client = Raw(server)
    assert "welcome" in (client.hello(token) or {})
    assert client.ask({"id": 1, "op": "reset"}) == {"id": 1, "ok": True, "result": None}
    client.close()


def shim(folder: Path, body: str) -> str:
    """A provider file whose class P builds the provider under test; returns 'file.py:P'."""
    path = folder / f"shim_{abs(hash(body))}.py"
    path.write_text(
        "from conformance.remote.cassette import *\n"
        "from conformance.remote.client import *\nimport sys\n\n"
        f"class P:\n    def __new__(cls):\n        return {body}\n",
        encoding="utf-8",
    )
    return f"{path}:P"


def run(out: Path, provider: str, keyword: str | None = None) -> tuple[int, str]:
    """`conformance run`, quick profile, fixed seed: (exit code, stderr)."""
    argv = ["run", "--provider", provider, "--out", str(out), "--profile", "quick", "--seed", "1"]
    if keyword:
        argv += ["-k", keyword]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(argv)
    return code, stderr.getvalue()


def same_as(expected: dict[str, Any], code: int, out: Path, method: str) -> None:
    """The run at `out` concluded what the in-process run did on the same checks, and ran
    every check of `method` that the in-process run did."""
    got = verdicts(out)
    names = set(got["checks"])
    assert {n for n in expected["checks"] if n.startswith(f"{method}::")} <= names
    assert names <= set(expected["checks"])
    assert got["checks"] == {name: expected["checks"][name] for name in names}
    assert got["methods"][method] == expected["methods"][method]
    assert code == int(any(status in ("failed", "error") for status, _ in got["checks"].values()))


@pytest.fixture(scope="module", autouse=True)
def _catalog_once() -> Iterator[None]:
    with catalog_parsed_once():
        yield


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The reference's verdicts in-process, one run for every selection below (whether the
    reference conforms is test_checks.py's concern: here only sameness matters)."""
    out = tmp_path_factory.mktemp("in-process")
    code, stderr = run(out, "reference", " or ".join(f"({k})" for k in SELECTIONS.values()))
    assert code in (0, 1), stderr
    return verdicts(out)


# -- the wire format -----------------------------------------------------------------------------


def test_outcomes_round_trip_with_non_json_outputs_as_repr() -> None:
    outcome = Outcome(
        0x8004270A,
        {"ppAsync": None, "n": 3, "t": (1, 2), "b": b"\x01", "f": float("nan"), "s": "é\udc80"},
        None,
    )
    wire = protocol.decode(protocol.encode(protocol.ok(7, protocol.outcome_to_json(outcome))))
    back = protocol.outcome_from_json(wire["result"])
    assert back == Outcome(
        0x8004270A,
        {"ppAsync": None, "n": 3, "t": [1, 2], "b": "b'\\x01'", "f": "nan", "s": "é\udc80"},
        None,
    )
    assert protocol.outcome_from_json(protocol.outcome_to_json("garbage")) == "garbage"


def test_errors_cross_as_the_exceptions_they_were() -> None:
    unsupported = protocol.exception_from_error(
        protocol.error_from_exception(Unsupported("method 'X'"))
    )
    assert isinstance(unsupported, Unsupported) and str(unsupported) == "method 'X'"
    raised = protocol.exception_from_error(protocol.error_from_exception(KeyError("T9")))
    assert isinstance(raised, RemoteProviderError)
    assert (type(raised).__name__, str(raised)) == ("KeyError", "'T9'")
    odd = protocol.exception_from_error({"kind": "provider", "type": "os.system('x')", "text": "t"})
    assert type(odd).__name__ == "RemoteProviderError"
    timeout = protocol.exception_from_error({"kind": "timeout", "message": "too slow"})
    assert isinstance(timeout, TimeoutError)


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"op": "reset"}, "needs an 'id'"),
        ({"id": True, "op": "reset"}, "needs an 'id'"),
        ({"id": 1, "op": "format_disk"}, "unknown op 'format_disk'"),
        ({"id": 1, "op": "call", "method": LOGOUT}, "call needs 'args' as a JSON object"),
        ({"id": 1, "op": "setup", "step": []}, "setup needs 'step' as a JSON object"),
    ],
)
def test_malformed_requests_are_named(message: dict[str, Any], error: str) -> None:
    with pytest.raises(ProtocolError, match=error):
        protocol.parse_request(message)


def test_lines_are_bounded_and_the_stream_stays_in_step() -> None:
    data = io.BytesIO(b"x" * 100 + b"\n" + b"ok\n" + b"y" * 300 + b"\nlast\npartial")
    reader = LineReader(data.read, limit=64)
    with pytest.raises(MessageTooLarge, match="100 bytes is over the limit of 64"):
        reader.read_line()
    assert reader.read_line() == b"ok"
    with pytest.raises(MessageTooLarge):
        reader.read_line()
    assert reader.read_line() == b"last"
    with pytest.raises(TruncatedMessage, match="7 bytes without a newline"):
        reader.read_line()
    assert reader.read_line() is None
    with pytest.raises(ProtocolError, match="nested too deeply"):
        protocol.decode(b"[" * 100_000)


# -- the whole suite through the agent -----------------------------------------------------------

# A few checks of one method each, to keep this file quick (each `conformance run` costs
# seconds of collection): the A form (non-ASCII text crosses the wire) and a COM method of
# another family. benchmarks/remote_ratio.py compares the whole suite.
TCP_METHOD, STDIO_METHOD = "RemoveIScsiPersistentTargetA", "IVMGuestOS::Logoff"
SELECTIONS = {
    TCP_METHOD: "RemoveIScsiPersistentTargetA and (scenario or oracle)",
    STDIO_METHOD: "Logoff and (scenario or out)",
}


def test_the_suite_over_tcp_gives_the_in_process_verdicts(
    agent_process: str, in_process: dict[str, Any], tmp_path: Path
) -> None:
    remote = shim(tmp_path, f"RemoteProvider('remote+tcp://{agent_process}')")
    code, _ = run(tmp_path, remote, SELECTIONS[TCP_METHOD])
    same_as(in_process, code, tmp_path, TCP_METHOD)


def test_the_suite_over_stdio_gives_the_in_process_verdicts_and_replays_from_its_cassette(
    in_process: dict[str, Any], tmp_path: Path
) -> None:
    command = " ".join([*AGENT, "--provider", "reference", "--stdio"])
    cassette = tmp_path / "run.jsonl"
    recorded = shim(
        tmp_path,
        f"RecordingProvider(RemoteProvider({'remote+stdio:' + command!r}), {str(cassette)!r})",
    )
    code, _ = run(tmp_path / "stdio", recorded, SELECTIONS[STDIO_METHOD])
    same_as(in_process, code, tmp_path / "stdio", STDIO_METHOD)
    replay = shim(tmp_path, f"CassetteProvider({str(cassette)!r})")
    code, _ = run(tmp_path / "replay", replay, SELECTIONS[STDIO_METHOD])
    same_as(in_process, code, tmp_path / "replay", STDIO_METHOD)


# -- the remote provider -------------------------------------------------------------------------


def test_provider_exceptions_read_as_they_would_in_process(workdir: Path) -> None:
    with served(AgentConfig(provider_in(workdir, "Raises"))) as server:
        host, port = server.server_address[:2]
        remote = open_remote(f"remote+tcp://{host}:{port}")
        remote.reset()
        with pytest.raises(Unsupported, match="method 'Nope'"):
            remote.call("Nope", {})
        with pytest.raises(Exception) as raised:
            _guard(lambda: remote.call(LOGOUT, {"this": "A", "targetId": "T"}), f"call({LOGOUT})")
        assert str(raised.value) == f"provider raised in call({LOGOUT}): ValueError: bad id 'T'"
        remote.close()


def test_a_hung_call_times_out_and_the_next_test_case_reconnects(workdir: Path) -> None:
    with served(AgentConfig(provider_in(workdir, "Hang"), call_timeout=0.3)) as server:
        client = Raw(server)
        client.hello(None)
        client.ask({"id": 1, "op": "reset"})
        started = time.monotonic()
        answer = client.ask({"id": 2, "op": "call", "method": LOGOUT, "args": {}})
        assert answer is not None and answer["error"]["kind"] == "timeout"
        assert f"did not answer call({LOGOUT}) within 0.3 s" in answer["error"]["message"]
        assert time.monotonic() - started < 3
        assert client.read() is None  # the agent closed the stuck connection
        host, port = server.server_address[:2]
        remote = RemoteProvider(f"remote+tcp://{host}:{port}")
        remote.reset()
        with pytest.raises(TimeoutError, match=r"within 0\.3 s"):
            remote.call(LOGOUT, {})
        with pytest.raises(ConnectionError, match="lost earlier in this test case"):
            remote.setup({"target": "T1"})
        remote.reset()  # a new connection, a fresh provider
        assert remote.setup({"target": "T1"})
        remote.close()


def test_a_lost_connection_fails_the_call_in_flight_and_reset_reconnects(workdir: Path) -> None:
    command = " ".join([*AGENT, "--provider", provider_in(workdir, "Dies"), "--stdio"])
    remote = RemoteProvider(f"remote+stdio:{command}")
    remote.reset()
    target = remote.setup({"target": "T1"})
    with pytest.raises(ConnectionError) as lost:
        remote.call(LOGOUT, {"this": "A", "targetId": target})
    assert f"connection to the agent lost during call({LOGOUT})" in str(lost.value)
    assert "exited with code 3" in str(lost.value)
    remote.reset()
    assert remote.observe("targets") == []
    remote.close()


def test_stray_prints_of_a_stdio_provider_do_not_corrupt_the_stream(workdir: Path) -> None:
    command = " ".join([*AGENT, "--provider", provider_in(workdir, "Chatty"), "--stdio"])
    remote = RemoteProvider(f"remote+stdio:{command}")
    for _ in range(3):
        remote.reset()
    assert remote.observe("targets") == []
    remote.close()


def test_a_refused_token_makes_the_run_exit_3_with_the_agents_reason(
    workdir: Path, tmp_path: Path
) -> None:
    with served(AgentConfig("reference", token=TOKEN)) as server:
        host, port = server.server_address[:2]
        spec = f"remote+tcp://{host}:{port}"
        for token_file, reason in (
            (workdir / "wrong-token", "wrong token"),
            (None, "a token is required"),
        ):
            token = token_file and str(token_file)
            code, stderr = run(
                tmp_path, shim(tmp_path, f"RemoteProvider({spec!r}, token_file={token!r})")
            )
            assert code == 3, stderr
            assert f"the agent at {host}:{port} refused the connection: {reason}" in stderr
        RemoteProvider(spec, token_file=str(workdir / "token")).close()
    command = " ".join(
        [*AGENT, "--provider", "reference", "--stdio", "--token-file", str(workdir / "token")]
    )
    with pytest.raises(ProviderUnavailable, match="refused the connection: wrong token"):
        RemoteProvider(f"remote+stdio:{command}", token_file=str(workdir / "wrong-token"))


def test_a_protocol_version_the_harness_does_not_speak_is_unavailable() -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def future_agent() -> None:
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.sendall(b'{"welcome": 2, "provider": "x"}\n')
        conn.close()

    threading.Thread(target=future_agent, daemon=True).start()
    port = listener.getsockname()[1]
    with pytest.raises(
        ProviderUnavailable, match="protocol version 2; this harness speaks version 1"
    ):
        RemoteProvider(f"remote+tcp://127.0.0.1:{port}")
    listener.close()


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("remote+tcp://127.0.0.1", "expected remote\\+tcp://HOST:PORT"),
        ("remote+tcp://127.0.0.1:1", "cannot reach the agent"),
        ("remote+stdio:", "expected remote\\+stdio:COMMAND"),
        ("remote+stdio:/no/such/agent", "cannot reach the agent"),
        ("remote+udp://x:1", "unknown remote provider"),
        ("replay:/no/such/cassette.jsonl", "No such file"),
    ],
)
def test_unreachable_agents_are_unavailable_saying_why(spec: str, reason: str) -> None:
    opener = open_cassette if spec.startswith("replay:") else open_remote
    with pytest.raises(ProviderUnavailable, match=reason):
        opener(spec)


# -- hardening: each refused with a clear error, and the agent keeps serving -----------------------


@pytest.fixture
def guarded() -> Iterator[AgentServer]:
    config = AgentConfig(
        "reference", token=TOKEN, max_message=4096, max_errors=5, idle_timeout=5, hello_timeout=5
    )
    with served(config) as server:
        yield server


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("guess", "wrong token"),
        (None, "a token is required"),
        ("", "wrong token"),
    ],
)
def test_a_bad_token_is_refused_and_logged(
    guarded: AgentServer, token: str | None, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = Raw(guarded)
    with caplog.at_level(logging.WARNING, logger="conformance.remote.agent"):
        answer = client.hello(token)
        assert answer is not None and answer["refused"].startswith(reason)
        assert client.read() is None
    assert any(f"refused: {reason}" in r.getMessage() for r in caplog.records)
    still_serving(guarded)


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n",
            "the first message must be a hello: not UTF-8",
        ),
        (b"GET / HTTP/1.1\r\n", "the first message must be a hello: malformed JSON"),
        (b'{"id": 1, "op": "reset"}\n', "the first message must be a hello"),
        (
            b'{"hello": 2, "token": "' + TOKEN.encode() + b'"}\n',
            "protocol version 2 is not supported",
        ),
        (b'{"hello": 1, "token": "' + b"x" * 5000 + b'"}\n', "over the limit of 4096"),
    ],
)
def test_a_bad_hello_is_refused(guarded: AgentServer, first: bytes, reason: str) -> None:
    client = Raw(guarded)
    answer = client.ask(first)
    assert answer is not None and reason in answer["refused"]
    still_serving(guarded)


@pytest.mark.parametrize(
    ("request_line", "reason"),
    [
        (b"\xff\xfe garbage \x00\n", "not UTF-8"),
        (b"{'id': 1}\n", "malformed JSON"),
        (b"[1, 2]\n", "a message is a JSON object"),
        (b'{"id": 5, "op": "exec"}\n', "unknown op 'exec'"),
        (b"x" * 10_000 + b"\n", "10000 bytes is over the limit of 4096"),
    ],
)
def test_a_malformed_request_gets_an_error_and_the_connection_goes_on(
    guarded: AgentServer, request_line: bytes, reason: str
) -> None:
    client = Raw(guarded)
    client.hello()
    answer = client.ask(request_line)
    assert answer is not None and answer["ok"] is False
    assert answer["error"]["kind"] == "protocol" and reason in answer["error"]["message"]
    assert client.ask({"id": 9, "op": "observe", "collection": "targets"}) == {
        "id": 9,
        "ok": True,
        "result": [],
    }
    client.close()


def test_a_half_closed_connection_is_told_why_and_the_agent_keeps_serving(
    guarded: AgentServer,
) -> None:
    client = Raw(guarded)
    client.hello()
    client.send(b'{"id": 1, "op": "res')
    client.sock.shutdown(socket.SHUT_WR)
    answer = client.read()
    assert answer is not None and answer["error"]["kind"] == "protocol"
    assert "closed in the middle of a message (20 bytes" in answer["error"]["message"]
    assert client.read() is None
    still_serving(guarded)


def test_too_many_malformed_requests_end_the_connection(guarded: AgentServer) -> None:
    client = Raw(guarded)
    client.hello()
    for _ in range(5):
        assert client.ask(b"nonsense\n")["error"]["kind"] == "protocol"  # type: ignore[index]
    assert client.ask(b"nonsense\n") == {"bye": "too many malformed requests (6)"}
    assert client.read() is None
    still_serving(guarded)


def test_idle_and_silent_clients_are_timed_out() -> None:
    config = AgentConfig("reference", idle_timeout=0.3, hello_timeout=0.3, max_connections=2)
    with served(config) as server:
        silent = Raw(server)
        assert silent.read() == {"refused": "no hello within 0.3 s"}
        idle = Raw(server)
        assert "welcome" in (idle.hello(None) or {})
        idle.send(b'{"id": 1, "op"')  # a slow client: the whole request must come in time
        assert idle.read() == {"bye": "no complete request within 0.3 s"}
        still_serving(server, None)


def test_a_harness_idle_past_the_agents_limit_reconnects_at_the_next_test_case() -> None:
    with served(AgentConfig("reference", idle_timeout=0.2)) as server:
        host, port = server.server_address[:2]
        remote = RemoteProvider(f"remote+tcp://{host}:{port}")
        time.sleep(0.8)  # the agent says bye; reset was never run, so it is sent again
        remote.reset()
        assert remote.setup({"target": "T1"})
        time.sleep(0.8)  # mid test case, the world is gone with the connection
        with pytest.raises(
            ConnectionError,
            match="the agent ended the connection before "
            "observe\\('targets'\\): no complete request",
        ):
            remote.observe("targets")
        remote.reset()
        assert remote.observe("targets") == []
        remote.close()


def test_connections_over_the_limit_are_refused() -> None:
    with served(AgentConfig("reference", max_connections=1)) as server:
        first = Raw(server)
        first.hello(None)
        assert Raw(server).hello(None) == {"refused": "too many connections (limit 1)"}
        first.close()
        deadline = time.monotonic() + 5  # the agent frees the slot once it reads the EOF
        while "welcome" not in ((second := Raw(server)).hello(None) or {}):
            assert time.monotonic() < deadline
            second.close()
            time.sleep(0.05)
        assert second.ask({"id": 1, "op": "reset"}) == {"id": 1, "ok": True, "result": None}


def test_slow_strangers_cannot_keep_a_harness_out() -> None:
    """Connections that never send a hello wait in a bounded line; each newcomer past it
    ends the longest-waiting one, so a legitimate client always gets in."""
    config = AgentConfig("reference", hello_timeout=30, max_connections=2, max_waiting=4)
    with served(config) as server:
        strangers = [
            socket.create_connection(server.server_address[:2], timeout=5) for _ in range(12)
        ]
        for _ in range(3):
            still_serving(server, None)
        waiting, admitted = server.admission.counts()
        assert waiting <= 4 and admitted <= 2
        evicted = Raw.__new__(Raw)  # the first stranger was long since dropped, saying why
        evicted.sock, evicted.reader = strangers[0], LineReader(strangers[0].recv, 1 << 16)
        assert "connections are waiting for one (--max-waiting)" in evicted.read()["refused"]  # type: ignore[index]
        for sock in strangers:
            sock.close()


def test_calls_that_never_return_keep_their_slot_and_are_named(workdir: Path) -> None:
    """A hung provider call ends its connection but keeps its thread's slot until it returns:
    threads stuck in the provider never exceed --max-connections, and the refusal says why."""
    config = AgentConfig(provider_in(workdir, "Hang"), call_timeout=0.2, max_connections=2)
    with served(config) as server:
        for _ in range(2):
            client = Raw(server)
            client.hello(None)
            client.ask({"id": 1, "op": "reset"})
            answer = client.ask({"id": 2, "op": "call", "method": LOGOUT, "args": {}})
            assert answer is not None and answer["error"]["kind"] == "timeout"
            client.close()
        refused = Raw(server).hello(None)
        assert refused == {
            "refused": "too many connections (limit 2); 2 held by provider "
            f"calls that never returned: call({LOGOUT}), "
            f"call({LOGOUT})"
        }
        assert server.admission.counts() == (0, 2)  # the two threads still in the provider


def test_the_agent_will_not_listen_beyond_loopback_without_a_token(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert agent.main(["--provider", "reference", "--listen", "0.0.0.0:0"]) == 2
    assert "refusing to listen on 0.0.0.0 without a token" in capsys.readouterr().err


def test_a_remote_client_goes_through_a_token_agent(workdir: Path) -> None:
    with served(AgentConfig("reference", token=TOKEN)) as server:
        host, port = server.server_address[:2]
        remote = RemoteProvider(f"remote+tcp://{host}:{port}", token_file=str(workdir / "token"))
        assert LOGOUT in remote.capabilities()["methods"]
        remote.close()


# -- cassettes -------------------------------------------------------------------------------------


def record(path: Path, targets: list[str]) -> None:
    recorder = RecordingProvider(ReferenceProvider(), path)
    recorder.capabilities()
    recorder.reset()
    for name in targets:
        recorder.setup({"target": name})
    with contextlib.suppress(Unsupported):
        recorder.call("Nope", {})
    recorder.close()


def test_a_cassette_replays_ids_results_and_errors(tmp_path: Path) -> None:
    record(tmp_path / "c.jsonl", ["T1"])
    lines = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert lines[0] == {"cassette": 1, "protocol": 1, "provider": "reference"}
    assert [line["op"] for line in lines[1:]] == ["capabilities", "reset", "setup", "call", "close"]
    replay = CassetteProvider(tmp_path / "c.jsonl")
    replay.capabilities()
    replay.reset()
    assert replay.setup({"target": "T1"}) == lines[3]["result"]
    with pytest.raises(Unsupported, match="method 'Nope'"):
        replay.call("Nope", {})
    replay.close()
    assert replay.remaining == 0


def test_a_cassette_that_lacks_a_call_fails_clearly(tmp_path: Path) -> None:
    record(tmp_path / "c.jsonl", ["T1"])
    replay = CassetteProvider(tmp_path / "c.jsonl")
    replay.capabilities()
    replay.reset()
    with pytest.raises(CassetteMismatch) as mismatch:
        replay.setup({"target": "T2"})
    assert "does not hold setup" in str(mismatch.value)
    assert 'step.target: asked "T2", the cassette holds "T1"' in str(mismatch.value)
    assert "line 4" in str(mismatch.value)
    with pytest.raises(CassetteMismatch, match="out of step with this run since line 4"):
        replay.observe("targets")
    exhausted = CassetteProvider(tmp_path / "c.jsonl")
    exhausted.capabilities()
    exhausted.reset()
    exhausted.setup({"target": "T1"})
    with pytest.raises(Unsupported):
        exhausted.call("Nope", {})
    exhausted.close()
    with pytest.raises(CassetteMismatch, match="holds no exchange for reset\\(\\): all 5"):
        exhausted.reset()
