"""The world: one test case's view of a provider, in the scenario's names.

Specs and the oracle speak of objects by scenario name (T1, S2); providers speak in their
own ids (GUIDs, instance names, port numbers). The World applies `given` steps through
`setup`, keeps the name <-> id map both ways, turns call arguments into provider arguments,
and turns what `observe` returns back into names, so the oracle's state and the provider's
can be compared field by field.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from conformance.engine import batch as batches
from conformance.engine.batch import BatchingProvider
from conformance.engine.values import OUT, Unknown  # noqa: F401 - also imported from here
from conformance.errors import ProviderFault
from conformance.provider import Outcome, Provider, Unsupported
from conformance.spec.domain import ANY, FAULT_STEP, Domain, FieldType
from conformance.spec.model import Param, Spec

_UNKNOWN_NS = uuid.UUID("6f1c3a52-7d0e-4f7a-9b1e-3c5d2a9e8b41")


class ProviderError(ProviderFault):
    """The provider raised or broke the contract; the check fails with this message."""


@dataclass(frozen=True)
class Then:
    """What a test case does right after its setups: one call, and the collections it may
    read next. Told in advance, it lets a provider in another process answer the whole case
    in one round trip; the provider gets the same requests either way."""

    spec: Spec
    args: dict[str, Any]
    observe: tuple[str, ...] = ()
    calls: int = 1  # the same call made again (with its observations) after the first


@dataclass(frozen=True)
class _Pending:
    """The id that setup request `index` of a batch will return, for object `name`."""

    index: int
    name: str
    as_int: bool = False


@dataclass
class World:
    provider: Provider
    domain: Domain
    ids: dict[str, Any] = field(default_factory=dict)  # name -> provider id
    names: dict[tuple[str, str], str] = field(default_factory=dict)  # (collection, id) -> name
    steps: list[dict[str, Any]] = field(default_factory=list)
    # answers that came ahead of the engine's asking: the announced call's, and observations
    _ahead: tuple[str, tuple[str, ...], list[Any]] | None = field(default=None, repr=False)
    # what each collection read since the last request that changes state (or its exception)
    _seen: dict[str, Any] = field(default_factory=dict, repr=False)
    _then: Then | None = field(default=None, repr=False)  # announced, not made yet
    _pending: int = field(default=0, repr=False)  # `_Pending` ids handed out while building
    # "call" / "setup" -> the collections the engine read after the last one (read ahead next)
    _habit: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    _since: list[str] = field(default_factory=list, repr=False)  # read since the last change
    changed: str | None = field(default=None, repr=False)  # the kind of the last change
    # whether the provider takes batches (a worker process): asked once, since `isinstance`
    # of a runtime Protocol costs tens of microseconds
    _batching: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self._batching = isinstance(self.provider, BatchingProvider)

    def reset(self) -> None:
        self._forget()
        _guard(self.provider.reset, "reset()")

    def _forget(self) -> None:
        """No object made so far is known any more: the provider is about to reset."""
        self.ids.clear()
        self.names.clear()
        self.steps.clear()
        self._ahead = None
        self._seen.clear()
        self._then = None
        self.changed = None
        self._since = []

    def _changing(self, kind: str) -> None:
        """A request of `kind` that changes the provider's state is next: what the engine read
        after the previous one becomes what is read ahead after the next of that kind, and
        what was read is out of date."""
        if self.changed is not None:
            self._habit[self.changed] = tuple(self._since)
        self.changed = kind
        self._since = []
        self._seen.clear()

    def setup(self, step: dict[str, Any]) -> None:
        """Apply one completed `given` step through the provider; the collections read after
        the previous setup are read with it (one round trip to a worker process)."""
        self._changing("setup")
        sent = self._sent(step)
        what = lambda: f"setup({_short(sent)})"  # noqa: E731 - built only when needed
        observe = self._habit.get("setup", ())
        if not observe:
            created = _guard(lambda: self.provider.setup(sent), what)
        else:
            request: dict[str, Any] = {"op": "setup", "step": sent}
            if next(iter(step)) != FAULT_STEP:
                request["expect_id"] = True
            answers = self._run([request, *map(_observe_request, observe)], what())
            _reraise(answers[0], what)
            created = answers[0]
            self._seen = dict(zip(observe, answers[1:], strict=False))
        self._created(step, what, created)

    def reset_and_setup(
        self,
        steps: list[dict[str, Any]],
        then: Then | None = None,
        requests: list[dict[str, Any]] | None = None,
    ) -> None:
        """`reset()`, then `setup(step)` for each completed step; with `then`, the call the
        engine makes next (`call`) and the observations after it are made now as well when
        the provider takes batches (a worker process: one round trip, ids of objects made in
        the batch filled in on its side). Results and errors are those of single requests,
        each raised when the engine asks for it. `requests`: `batch_requests(steps, then)`
        when the caller has it already."""
        if not self._batching:
            self.reset()
            for step in steps:
                self.setup(step)
            self._then = then
            return
        if requests is None:
            requests = self.batch_requests(steps, then)
        else:
            self._forget()
        results = self._batch(self._batches(), requests, "reset()", _batch_name(requests))
        _reraise(results[0], "reset()")
        for step, created in zip(steps, results[1 : len(steps) + 1], strict=False):
            what = lambda step=step: f"setup({_short(self._sent(step))})"  # noqa: E731
            _reraise(created, what)  # built only when needed: it is costly
            self._created(step, what, created)
        if then is not None and len(requests) > len(steps) + 1:
            self._ahead = (then.spec.id, then.observe, results[len(steps) + 1 :])

    def batch_requests(
        self, steps: list[dict[str, Any]], then: Then | None = None
    ) -> list[dict[str, Any]]:
        """The batch `reset_and_setup(steps, then)` sends (this world forgets its objects)."""
        self._forget()
        requests = self._setup_requests(steps) + self._then_requests(then)
        self._forget()  # the ids pending in the requests
        return requests

    def _setup_requests(self, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The reset and setup requests of a batch; ids made in it are left `_Pending`."""
        requests: list[dict[str, Any]] = [{"op": "reset"}]
        for index, step in enumerate(steps, 1):
            kind, name = next(iter(step.items()))
            handed = self._pending
            request: dict[str, Any] = {"op": "setup", "step": self._sent(step)}
            if self._pending != handed:  # the step refers to objects made in this batch
                _with_refs(request, "step")
            if kind != FAULT_STEP:
                request["expect_id"] = True
                self.ids[name] = _Pending(index, name)
            requests.append(request)
        return requests

    def _then_requests(self, then: Then | None) -> list[dict[str, Any]]:
        """The call and observe requests of a batch (none when the arguments cannot be
        built: `call` then raises what building them raises, after the setups)."""
        if then is None:
            return []
        handed = self._pending
        try:
            sent = self.provider_args(then.spec, then.args)
        except Exception:
            return []
        call = _call_request(then.spec.id, sent)
        return _call_requests(_with_refs(call, "args") if self._pending != handed else call, then)

    def _batch(
        self,
        batch: Callable[[list[dict[str, Any]]], list[Any]],
        requests: list[dict[str, Any]],
        what: str,
        failing: str | None = None,
    ) -> list[Any]:
        """A provider's answers to a batch, refused with a ProviderError when they cannot be
        the answers to these requests (too many, none, or ending for no reason). `what` is
        its first request; `failing` what a batch that fails as a whole is named after."""
        results = _guard(lambda: batch(requests), failing or what)
        count = len(results) if isinstance(results, list) else 0
        if not 1 <= count <= len(requests):
            raise ProviderError(
                f"the provider answered a batch of {len(requests)} requests "
                f"({what} first) with {_short(results)}"
            )
        if count < len(requests) and not batches.stops(
            batches.batch_item(requests[count - 1]), results[-1]
        ):
            raise ProviderError(
                f"the provider's batch stopped after {count} of "
                f"{len(requests)} requests ({what} first) without saying why"
            )
        return results

    def _batches(self) -> Callable[[list[dict[str, Any]]], list[Any]]:
        return cast(BatchingProvider, self.provider).batch  # `_batching` said so

    def _sent(self, step: dict[str, Any]) -> dict[str, Any]:
        """A step as the provider gets it: references as provider ids."""
        kind, name = next(iter(step.items()))
        fields = self.domain.fields_of_step(step)
        sent = {kind: name}
        for key, value in step.items():
            if key != kind:
                sent[key] = self._to_ids(fields[key], value)
        return sent

    def _created(self, step: dict[str, Any], what: Callable[[], str], created: Any) -> None:
        kind, name = next(iter(step.items()))
        self.steps.append(step)
        if kind == FAULT_STEP:
            return
        if not isinstance(created, str | int) or isinstance(created, bool) or created == "":
            raise ProviderError(
                f"{what()} returned {created!r}; it must return "
                "the provider's id for the new object as a non-empty str"
            )
        created = str(created)
        coll = self.domain.by_step(kind)
        assert coll is not None
        self.ids[name] = created
        self.names[(coll.name, created)] = name

    def _to_ids(self, ftype: FieldType, value: Any) -> Any:
        if ftype.kind == "ref":
            if not isinstance(value, str):
                return value
            got = self.ids.get(value, value)
            if type(got) is _Pending:
                self._pending += 1
            return got
        if ftype.kind == "list" and ftype.item is not None and isinstance(value, list):
            return [self._to_ids(ftype.item, v) for v in value]
        return value

    def id_for(self, step: str, ref: Any) -> Any:
        """The provider value for a reference: a known name's id, or a made-up unknown id."""
        coll = self.domain.by_step(step)
        id_type = coll.id if coll else "string"
        raw = unknown_id(id_type, ref) if isinstance(ref, Unknown) else self.ids.get(ref, ref)
        if type(raw) is _Pending:
            self._pending += 1
            return _Pending(raw.index, raw.name, id_type == "uint32")
        return int(raw) if id_type == "uint32" and isinstance(raw, str) and raw.isdigit() else raw

    def provider_args(self, spec: Spec, args: dict[str, Any]) -> dict[str, Any]:
        """Oracle arguments -> what the provider is called with."""
        out: dict[str, Any] = {}
        if spec.this_object is not None:
            out["this"] = self.id_for(spec.this_object, args["this"])
        for param in spec.params:
            value = args.get(param.name)
            if param.is_out:
                if value is None:
                    out[param.name] = None  # the caller passed NULL
                continue
            out[param.name] = self._arg_value(spec, param, value)
        return out

    def _arg_value(self, spec: Spec, param: Param, value: Any) -> Any:
        if isinstance(value, Unknown):
            return self.id_for(value.step, value)
        if param.refers and isinstance(value, str) and value in self.ids:
            return self.id_for(param.refers, value)
        return value

    def call(
        self, spec: Spec, args: dict[str, Any], observe: tuple[str, ...] | None = None
    ) -> Outcome:
        """Call the method; then, when the provider accepted the call, read the `observe`
        collections (all of them, so the provider sees the same requests however it is
        reached; None: those the engine read after the previous call), for `observe()` to
        hand out. The call announced to `reset_and_setup` is answered from its batch."""
        self._changing("call")
        sent = self.provider_args(spec, args)
        if observe is None:
            observe = self._habit.get("call", ())
        if self._ahead is not None:
            method, observe, answers = self._ahead
            self._ahead = None
            if method != spec.id:
                raise RuntimeError(f"call({spec.id}) is not the call announced: {method}")
        else:
            then, self._then = self._then, None
            if then is None or then.spec.id != spec.id:
                then = Then(spec, args, observe)
            observe = then.observe
            answers = self._run(
                _call_requests(_call_request(spec.id, sent), then), f"call({spec.id})"
            )
        _reraise(answers[0], f"call({spec.id})")
        outcome = check_outcome(answers[0], spec.id)
        size = 1 + len(observe)
        self._seen = dict(zip(observe, answers[1:size], strict=False))
        if len(answers) > size:  # the calls announced after this one
            self._ahead = (spec.id, observe, answers[size:])
        return outcome

    def _run(self, requests: list[dict[str, Any]], what: str) -> list[Any]:
        """Requests as one batch when the provider takes batches, else one at a time with
        the same rules: each result, or the exception that ended them."""
        if self._batching:
            return self._batch(self._batches(), requests, what)
        return batches.run_each([batches.batch_item(r) for r in requests], self._perform)

    def _perform(self, op: str, params: dict[str, Any]) -> Any:
        if op == "call":
            return self.provider.call(params["method"], params["args"])
        if op == "observe":
            return self.provider.observe(params["collection"])
        if op == "setup":
            return self.provider.setup(params["step"])
        return self.provider.reset()

    def observe(self, collection: str) -> list[dict[str, Any]]:
        """The provider's view of a collection, in scenario names and declared fields only."""
        coll = self.domain.collections[collection]
        if collection not in self._since:
            self._since.append(collection)
        if collection not in self._seen:  # not read since the state last changed
            try:
                self._seen[collection] = self.provider.observe(collection)
            except Exception as exc:
                self._seen[collection] = exc
        rows = self._seen[collection]
        _reraise(rows, lambda: f"observe({collection!r})")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ProviderError(
                f"observe({collection!r}) returned {_short(rows)}; it must return a list of dicts"
            )
        out = []
        for row in rows:
            if "id" not in row:
                raise ProviderError(
                    f"observe({collection!r}) returned an object without 'id': {_short(row)}"
                )
            item = {"id": self.name_of(collection, row["id"])}
            for fname, ftype in coll.fields.items():
                item[fname] = self._to_names(ftype, row.get(fname, _MISSING))
            out.append(item)
        return out

    def output_names(self, value: Any) -> Any:
        """An out-parameter's value with every provider id it holds turned into its name."""
        if isinstance(value, str | int) and not isinstance(value, bool):
            for (_, ident), name in self.names.items():
                if ident == str(value) and isinstance(value, str):
                    return name
            return value
        if isinstance(value, list):
            return [self.output_names(v) for v in value]
        if isinstance(value, dict):
            return {k: self.output_names(v) for k, v in value.items()}
        return value

    def name_of(self, collection: str, pid: Any) -> str:
        key = str(pid)
        if collection == ANY:
            for (_, ident), name in self.names.items():
                if ident == key:
                    return name
            return f"<new {key}>"
        return self.names.get((collection, key), f"<new {key}>")

    def _to_names(self, ftype: FieldType, value: Any) -> Any:
        if value is _MISSING:
            return "<missing>"
        if ftype.kind == "ref" and value is not None:
            return self.name_of(ftype.ref or ANY, value)
        if ftype.kind == "list" and ftype.item is not None and isinstance(value, list):
            return [self._to_names(ftype.item, v) for v in value]
        return value


_MISSING = object()


def unknown_id(id_type: str, ref: Unknown) -> str:
    if id_type == "guid":
        return str(uuid.uuid5(_UNKNOWN_NS, ref.name))
    if id_type == "uint32":
        return str(0x7FFF0000 + ref.n)
    return f"unknown-{ref.step}-{ref.n}"


def check_outcome(outcome: Any, where: str) -> Outcome:
    """Refuse what is not an Outcome of 32-bit unsigned codes, with a message that says why."""
    problem = batches.outcome_problem(outcome, where)
    if problem is not None:
        raise ProviderError(problem)
    return outcome


def _call_request(method: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"op": "call", "method": method, "args": args, "expect_outcome": True}


def _call_requests(call: dict[str, Any], then: Then) -> list[dict[str, Any]]:
    """The call and the observations after it, as many times as `then` makes the call."""
    return [call, *map(_observe_request, then.observe)] * then.calls


def _batch_name(requests: list[dict[str, Any]]) -> str:
    """What a batch that failed as a whole (its worker lost) is named after: its call, the
    request the test case is about, else its last setup, else its reset."""
    for request in requests:
        if request.get("op") == "call":
            return f"call({request.get('method')}) (its batch: reset, setups, the call)"
    setups = [r for r in requests if r.get("op") == "setup"]
    if setups:
        return f"setup({next(iter(setups[-1].get('step') or {}), '?')}) (its batch)"
    return "reset()"


def _observe_request(collection: str) -> dict[str, Any]:
    return {"op": "observe", "collection": collection, "may_fail": True}


def _with_refs(request: dict[str, Any], key: str) -> dict[str, Any]:
    """The request with each `_Pending` id under `key` back to its name, and a ref (an int
    ref for a uint32 id) telling the provider's side where the id goes."""
    refs: list[list[Any]] = []
    int_refs: list[list[Any]] = []
    request[key] = _take_pending(request[key], [key], refs, int_refs)
    if refs:
        request["refs"] = refs
    if int_refs:
        request["int_refs"] = int_refs
    return request


def _take_pending(
    value: Any, path: list[Any], refs: list[list[Any]], int_refs: list[list[Any]]
) -> Any:
    kind = type(value)
    if kind is _Pending:
        (int_refs if value.as_int else refs).append([value.index, *path])
        return value.name
    if kind is dict:
        return {
            k: _take_pending(v, [*path, k], refs, int_refs) if type(v) in _HOLDERS else v
            for k, v in value.items()
        }
    if kind is list:
        return [
            _take_pending(v, [*path, i], refs, int_refs) if type(v) in _HOLDERS else v
            for i, v in enumerate(value)
        ]
    return value


_HOLDERS = frozenset({_Pending, dict, list})  # what may hold a pending id


def _reraise(result: Any, what: str | Callable[[], str]) -> None:
    """What `_guard` would raise for a batched request that raised `result`."""
    if isinstance(result, BaseException):
        _guard(lambda: _raise(result), what)


def _raise(exc: BaseException) -> None:
    raise exc


def _guard(fn, what: str | Callable[[], str]):
    try:
        return fn()
    except Unsupported:
        raise
    except ProviderError:
        raise
    except Exception as exc:
        where = what() if callable(what) else what  # built only when needed: it is costly
        raise ProviderError(f"provider raised in {where}: {type(exc).__name__}: {exc}") from exc


_short = batches.short
