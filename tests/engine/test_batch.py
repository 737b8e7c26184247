"""One round trip per test case: batches, and test cases sent ahead of their judging.

A World told what a case does after its setups (`Then`: the call, the collections read after
it) sends the whole case as one batch to a provider that takes batches (a worker process),
and a property check sends the cases it will judge next (`submit`) while it judges one. These
tests hold the promise that makes that safe: the provider gets the same requests, and the
engine the same results and errors, batched or not; an answer that cannot be the answer to
the batch is a clear ProviderError; cassettes record single exchanges that replay.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conformance_providers.reference import ReferenceProvider

from conformance.engine import batch as batches
from conformance.engine import lookahead
from conformance.engine.lookahead import looking_ahead
from conformance.engine.scenarios import scenario_args
from conformance.engine.world import ProviderError, Then, World
from conformance.provider import Outcome, Provider, Unsupported
from conformance.remote import protocol
from conformance.remote.agent import AgentConfig, make_tcp_server
from conformance.remote.cassette import CassetteProvider, RecordingProvider
from conformance.remote.client import AHEAD_CASES, RemoteProvider
from conformance.spec.catalog import Catalog, load_catalog

LOGIN = "LoginIScsiTargetW"
SAVES_ON_PORT = "IsPersistent saves the login on the port and portal given"
OBSERVE = ("initiators", "ports", "persistent_targets")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


class Logged(ReferenceProvider):
    """The reference, noting each request it runs as (op, params)."""

    singles = 0  # requests made outside a batch

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, dict[str, Any]]] = []

    def reset(self) -> None:
        self.log.append(("reset", {}))
        super().reset()

    def __getattribute__(self, name: str) -> Any:
        if name in ("reset", "setup", "call", "observe") and not object.__getattribute__(
            self, "__dict__"
        ).get("_inside", False):
            self.singles += 1
        return object.__getattribute__(self, name)

    def setup(self, step: dict[str, Any]) -> str:
        self.log.append(("setup", {"step": step}))
        return super().setup(step)

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        self.log.append(("call", {"method": method_id, "args": args}))
        return super().call(method_id, args)

    def observe(self, collection: str) -> list[dict[str, Any]]:
        self.log.append(("observe", {"collection": collection}))
        return super().observe(collection)


class Batching(Logged):
    """Takes batches as an agent does: each request in order, with the protocol's rules;
    `batches` counts them."""

    batches = 0
    _inside = False

    def batch(self, requests: list[dict[str, Any]]) -> list[Any]:
        self.batches += 1
        self._inside = True
        try:
            return batches.run_each([batches.batch_item(r) for r in requests], self._perform)
        finally:
            self._inside = False

    def _perform(self, op: str, params: dict[str, Any]) -> Any:
        if op == "call":
            return self.call(params["method"], params["args"])
        if op == "observe":
            return self.observe(params["collection"])
        if op == "setup":
            return self.setup(params["step"])
        return self.reset()


def login_case(catalog: Catalog) -> tuple[list[dict[str, Any]], Then]:
    """A case whose call refers to a port made in the batch: a uint32 id, sent as an int."""
    spec = catalog.specs[LOGIN]
    scenario = next(s for s in spec.scenarios if s.name == SAVES_ON_PORT)
    domain = catalog.domains[spec.family]
    steps = [domain.complete(dict(s)) for s in scenario.given]
    return steps, Then(spec, scenario_args(spec, scenario), OBSERVE)


def play(
    catalog: Catalog, provider: Provider, steps: list[dict[str, Any]], then: Then
) -> tuple[Any, ...]:
    """What the engine sees of one case: the outcome (or error) and each observation."""
    world = World(provider, catalog.domains[then.spec.family])
    world.reset_and_setup(steps, then)
    seen: list[Any] = []
    try:
        seen.append(world.call(then.spec, then.args))
    except (ProviderError, Unsupported) as exc:
        return (type(exc).__name__, str(exc))
    for coll in then.observe:
        try:
            seen.append(world.observe(coll))
        except (ProviderError, Unsupported) as exc:
            seen.append((type(exc).__name__, str(exc)))
    return tuple(seen)


# -- the World: batched or not, the same requests and the same results ---------------------------


def test_a_batched_case_makes_the_requests_and_gets_the_results_of_single_ones(
    catalog: Catalog,
) -> None:
    steps, then = login_case(catalog)
    single, batched = Logged(), Batching()
    assert play(catalog, batched, steps, then) == play(catalog, single, steps, then)
    assert batched.log == single.log
    call = next(params for op, params in batched.log if op == "call")
    assert isinstance(call["args"]["InitiatorPortNumber"], int)  # filled in as an int


def test_the_batch_carries_refs_for_the_ids_made_in_it(catalog: Catalog) -> None:
    steps, then = login_case(catalog)
    requests = World(Batching(), catalog.domains["iscsi-discovery"]).batch_requests(steps, then)
    assert [r["op"] for r in requests] == [
        "reset",
        "setup",
        "setup",
        "setup",
        "call",
        *["observe"] * len(OBSERVE),
    ]
    assert requests[2]["refs"] == [[1, "step", "initiator"]]  # port N1 of initiator I1
    call = requests[4]
    assert call["refs"] == [[1, "args", "InitiatorInstance"]]
    assert call["int_refs"] == [[2, "args", "InitiatorPortNumber"]]
    assert call["expect_outcome"] is True and all(r["may_fail"] for r in requests[5:])


class Broken(Batching):
    """A batching provider that breaks one thing, chosen by `how`."""

    def __init__(self, how: str):
        super().__init__()
        self.how = how

    def batch(self, requests: list[dict[str, Any]]) -> list[Any]:
        results = super().batch(requests)
        if self.how == "too many":
            return [*results, None]
        if self.how == "early":
            return results[:2]
        if self.how == "nothing":
            return []
        return results

    def setup(self, step: dict[str, Any]) -> str:
        if self.how == "setup raises" and "port" in step:
            raise ValueError("no such HBA")
        return super().setup(step)

    def call(self, method_id: str, args: dict[str, Any]) -> Any:
        if self.how == "call raises":
            raise RuntimeError("the driver is gone")
        if self.how == "negative":
            return Outcome(-1, {}, None)
        return super().call(method_id, args)

    def observe(self, collection: str) -> list[dict[str, Any]]:
        if self.how == "observe unsupported" and collection == "ports":
            raise Unsupported("ports are not listed here")
        return super().observe(collection)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("too many", r"answered a batch of 8 requests \(reset\(\) first\) with \[null"),
        ("early", r"batch stopped after 2 of 8 requests \(reset\(\) first\) without saying why"),
        ("nothing", r"answered a batch of 8 requests \(reset\(\) first\) with \[\]"),
    ],
)
def test_a_batch_answer_that_lies_is_a_provider_error(
    catalog: Catalog, how: str, message: str
) -> None:
    steps, then = login_case(catalog)
    world = World(Broken(how), catalog.domains["iscsi-discovery"])
    with pytest.raises(ProviderError, match=message):
        world.reset_and_setup(steps, then)


class Unbatched(Broken):
    """The same breakage, on a provider that takes no batches."""

    batch = None  # type: ignore[assignment]


@pytest.mark.parametrize("how", ["setup raises", "call raises", "negative", "observe unsupported"])
def test_a_broken_provider_reads_the_same_batched_or_not(catalog: Catalog, how: str) -> None:
    """Errors are raised where the engine asks, with the messages of single requests; a call
    the harness refuses ends the batch, so nothing is observed after it either way."""
    steps, then = login_case(catalog)
    batched, single = Broken(how), Unbatched(how)

    def outcome(provider: Provider) -> Any:
        try:
            return play(catalog, provider, steps, then)
        except ProviderError as exc:
            return ("raised at setup", str(exc))

    assert outcome(batched) == outcome(single)
    assert batched.log == single.log
    if how == "setup raises":
        assert outcome(Broken(how))[1].startswith(
            'provider raised in setup({"port": "N1", "initiator": '
        )
    if how in ("call raises", "negative"):
        assert LOGIN in outcome(Broken(how))[1]
        assert all(op != "observe" for op, _ in batched.log)  # nothing read after it
    if how == "observe unsupported":  # the other collections are still read
        seen = outcome(Broken(how))
        assert seen[2] == ("Unsupported", "ports are not listed here") and len(seen[3]) == 1
        assert batched.batches == 1 and batched.singles == 0  # all of it in one round trip


def test_repeat_makes_its_second_call_in_the_same_batch(catalog: Catalog) -> None:
    steps, then = login_case(catalog)
    twice = Then(then.spec, then.args, then.observe, calls=2)
    logs = []
    for provider in (Batching(), Logged()):
        world = World(provider, catalog.domains["iscsi-discovery"])
        world.reset_and_setup(steps, twice)
        first = world.call(then.spec, then.args, then.observe)
        seen = [world.observe(c) for c in then.observe]
        second = world.call(then.spec, then.args, then.observe)
        logs.append((first, seen, second, [world.observe(c) for c in then.observe], provider.log))
    assert logs[0] == logs[1]
    assert [op for op, _ in logs[0][-1]].count("call") == 2


# -- the agent: the rules of a batch on the wire --------------------------------------------------

AGENT_PROVIDERS = '''
from conformance.provider import Outcome, Unsupported
from conformance_providers.reference import ReferenceProvider

class Refusing(ReferenceProvider):
    def call(self, method_id, args):
        return Outcome(-1, {}, None)

    def observe(self, collection):
        if collection == "ports":
            raise Unsupported("no ports")
        return super().observe(collection)


class Wide(ReferenceProvider):
    """Every observe answers 20,000 rows (about 400 KB)."""

    def observe(self, collection):
        return [{"id": f"row-{i:08}"} for i in range(20_000)]
'''


@contextlib.contextmanager
def agent_of(tmp_path: Path, provider: str) -> Iterator[str]:
    """A TCP agent served from a thread: its remote+tcp spec."""
    (tmp_path / "agent_providers.py").write_text(AGENT_PROVIDERS, encoding="utf-8")
    spec = provider if ":" not in provider else f"{tmp_path / 'agent_providers.py'}{provider}"
    server = make_tcp_server(AgentConfig(spec))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"remote+tcp://{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_agent_stops_after_a_refused_outcome_and_goes_on_after_a_failed_observe(
    tmp_path: Path,
) -> None:
    with agent_of(tmp_path, ":Refusing") as spec:
        remote = RemoteProvider(spec)
        observe = [{"op": "observe", "collection": c, "may_fail": True} for c in OBSERVE]
        results = remote.batch([{"op": "reset"}, *observe])
        assert results[1] == [] and isinstance(results[2], Unsupported) and results[3] == []
        call = {"op": "call", "method": LOGIN, "args": {}, "expect_outcome": True}
        results = remote.batch([{"op": "reset"}, call, *observe])
        assert len(results) == 2 and results[1] == Outcome(-1, {}, None)
        remote.close()


def test_a_batch_whose_answers_pass_the_message_limit_stops_there(tmp_path: Path) -> None:
    """200 observes of 400 KB each cannot be sent in one 1 MiB answer: the agent stops at the
    third instead of making all 200 (an 80 MB answer built, then refused: 3.1 GB and 27 s
    for a batch of 1,100 setups and 1,100 observes)."""
    with agent_of(tmp_path, ":Wide") as spec:
        remote = RemoteProvider(spec)
        observe = [{"op": "observe", "collection": "sessions", "may_fail": True}] * 200
        with pytest.raises(
            protocol.RemoteProviderError,
            match=r"batch of 200 requests is over the message "
            r"limit of 1048576 bytes after 3 of them",
        ):
            remote.batch(observe)
        assert len(remote.batch(observe[:2])) == 2  # what fits is answered
        remote.close()


def test_int_refs_put_an_id_of_digits_as_an_int() -> None:
    item = batches.BatchItem(
        "call",
        {"args": {"a": "A1", "n": "N1"}},
        refs=((0, "args", "a"),),
        int_refs=((1, "args", "n"),),
    )
    assert batches.fill_refs(item, ["guid-1", "2130706432"]) == {
        "args": {"a": "guid-1", "n": 2130706432}
    }
    assert batches.fill_refs(item, ["guid-1", "port-x"])["args"]["n"] == "port-x"
    with pytest.raises(batches.RefError, match="which is no id"):
        batches.fill_refs(item, ["guid-1", None])


@pytest.mark.parametrize(
    ("requests", "error"),
    [
        ([["reset"]], "batch request 0 is not a JSON object"),
        ([{"op": "close"}], "batch request 0: op 'close' cannot be batched"),
        ([{"op": "setup"}], "setup needs 'step' as a JSON object"),
        (
            [{"op": "reset"}, {"op": "setup", "step": {}, "int_refs": [[1, "step"]]}],
            "batch request 1: 'int_refs' must be a list of",
        ),
    ],
)
def test_a_malformed_batch_is_one_protocol_error(requests: list[Any], error: str) -> None:
    with pytest.raises(protocol.ProtocolError, match=error):
        protocol.parse_batch(7, requests)


# -- test cases sent ahead ------------------------------------------------------------------------


def case_batch(n: int) -> list[dict[str, Any]]:
    return [
        {"op": "reset"},
        {"op": "setup", "step": {"initiator_adapter": f"A{n}"}, "expect_id": True},
    ]


def test_cases_sent_ahead_are_answered_in_order_without_being_sent_again(tmp_path: Path) -> None:
    with agent_of(tmp_path, "reference") as spec:
        remote = RemoteProvider(spec)
        assert remote.submit([case_batch(n) for n in range(3)])
        assert len(remote._ahead) == 3
        for n in range(3):
            reset, made = remote.batch(case_batch(n))
            assert reset is None and batches.is_id(made)
        assert not remote._ahead
        # a case the engine skips is read and dropped; one it never announced goes live
        assert remote.submit([case_batch(n) for n in range(3)])
        remote.batch(case_batch(2))
        assert not remote._ahead
        assert remote.submit([case_batch(5)])
        assert remote.batch(case_batch(9))[0] is None and not remote._ahead
        remote.close()


def test_no_more_than_the_window_is_sent_ahead_and_never_a_request_on_a_moved_world(
    tmp_path: Path,
) -> None:
    with agent_of(tmp_path, "reference") as spec:
        remote = RemoteProvider(spec)
        assert remote.submit([case_batch(n) for n in range(AHEAD_CASES)])
        assert not remote.submit([case_batch(99)])  # all or nothing
        assert not remote.submit([[{"op": "observe", "collection": "targets"}]])
        with pytest.raises(RuntimeError, match="sent ahead"):
            remote.observe("targets")  # its world is not the one the agent is in
        remote.reset()  # a fresh start drops what was sent ahead
        assert not remote._ahead and remote.observe("targets") == []
        remote.close()


def test_looking_ahead_sends_each_case_once_in_order_and_yields_them_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A provider may refuse a case (its window is full): it is offered again later, and no
    case after it is sent before it, so the cases are answered in the order judged."""
    taken: list[int] = []
    refused: set[int] = set()

    def submit(batches: list[Any]) -> bool:
        case = batches[0][0]
        if case % 4 == 1 and case not in refused:
            refused.add(case)
            return False
        taken.append(case)
        return True

    subject = SimpleNamespace(provider=SimpleNamespace(submit=submit), planned={})
    monkeypatch.setattr(lookahead, "_batches", lambda plan, case, planned: [[case]])
    seen = list(looking_ahead(subject, lambda case: [], range(20)))  # type: ignore[arg-type]
    assert seen == list(range(20))
    assert taken == sorted(set(taken)) and set(taken) <= set(range(20)) and refused


# -- cassettes record single exchanges ------------------------------------------------------------


def test_a_cassette_recorded_through_batches_replays_one_request_at_a_time(
    catalog: Catalog, tmp_path: Path
) -> None:
    steps, then = login_case(catalog)
    cassette = tmp_path / "batched.jsonl"
    recorder = RecordingProvider(Batching(), cassette)
    recorded = play(catalog, recorder, steps, then)
    recorder.close()
    replay = CassetteProvider(cassette)
    assert not hasattr(replay, "batch")
    assert play(catalog, replay, steps, then) == recorded
    replay.close()
    assert replay.remaining == 0
    lines = cassette.read_text(encoding="utf-8").splitlines()
    assert '"op":"call"' in lines[5] and '"InitiatorPortNumber":' in lines[5]


# -- what the engine reads after a change is read with the next one ------------------------------


def test_what_was_read_after_a_call_or_setup_is_read_with_the_next_one(catalog: Catalog) -> None:
    """A state machine's steps name no observations: the World reads with a call (a setup)
    what the engine read after the previous one, and answers a second read of a collection
    with no change between from the first. Batched or not, the same requests."""
    steps, then = login_case(catalog)
    domain = catalog.domains["iscsi-discovery"]
    runs = []
    batching = Batching()
    for provider in (batching, Logged()):
        world = World(provider, domain)
        world.reset()
        seen = []
        for step in steps:
            world.setup(step)
            seen.append(world.observe("initiators"))
        for _ in range(2):
            seen.append(world.call(then.spec, then.args))
            seen += [world.observe("persistent_targets"), world.observe("persistent_targets")]
        runs.append((seen, provider.log))
    assert runs[0] == runs[1]
    ops = [(op, params.get("collection")) for op, params in runs[1][1]]
    assert ops[-4:] == [("call", None), ("observe", "persistent_targets")] * 2  # read once each
    assert ops.count(("observe", "initiators")) == len(steps)
    # alone: the reset, the first setup and what was read after it, the first call's reads
    assert batching.singles == 4 and batching.batches == len(steps) - 1 + 2
