"""The world: one test case's view of a provider, in the scenario's names.

Specs and the oracle speak of objects by scenario name (T1, S2); providers speak in their
own ids (GUIDs, instance names, port numbers). The World applies `given` steps through
`setup`, keeps the name <-> id map both ways, turns call arguments into provider arguments,
and turns what `observe` returns back into names, so the oracle's state and the provider's
can be compared field by field.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from conformance.domain import ANY, FAULT_STEP, Domain, FieldType
from conformance.provider import Outcome, Provider, Unsupported
from conformance.spec import Param, Spec

_UNKNOWN_NS = uuid.UUID("6f1c3a52-7d0e-4f7a-9b1e-3c5d2a9e8b41")
OUT = "out"  # an out-parameter the caller passed a valid pointer for


class ProviderError(Exception):
    """The provider raised or broke the contract; the check fails with this message."""


@dataclass(frozen=True)
class Unknown:
    """A reference to an object of `step` that does not exist."""

    step: str
    n: int = 1

    @property
    def name(self) -> str:
        return f"{self.step}?{self.n}"


@dataclass
class World:
    provider: Provider
    domain: Domain
    ids: dict[str, str] = field(default_factory=dict)  # name -> provider id
    names: dict[tuple[str, str], str] = field(default_factory=dict)  # (collection, id) -> name
    steps: list[dict[str, Any]] = field(default_factory=list)

    def reset(self) -> None:
        self._forget()
        _guard(self.provider.reset, "reset()")

    def _forget(self) -> None:
        """No object made so far is known any more: the provider is about to reset."""
        self.ids.clear()
        self.names.clear()
        self.steps.clear()

    def setup(self, step: dict[str, Any]) -> None:
        """Apply one completed `given` step through the provider."""
        sent = self._sent(step)
        created = _guard(lambda: self.provider.setup(sent), lambda: f"setup({_short(sent)})")
        self._created(step, sent, created)

    def reset_and_setup(self, steps: list[dict[str, Any]]) -> None:
        """`reset()`, then `setup(step)` for each completed step. A provider in another process
        offers `reset_and_setup` to make the same requests in one round trip (ids of objects
        made in the batch are filled in on its side); the results and errors are the same."""
        batched = getattr(self.provider, "reset_and_setup", None)
        if batched is None:
            self.reset()
            for step in steps:
                self.setup(step)
            return
        self._forget()
        made: dict[str, int] = {}  # name -> the step of this batch that creates it
        requests = []
        for index, step in enumerate(steps):
            kind, name = next(iter(step.items()))
            fields = self.domain.fields_of_step(step)
            sent, refs = {kind: name}, []
            for key, value in step.items():
                if key != kind:
                    sent[key] = _refs_to(fields[key], value, made, refs, [key])
            requests.append((sent, refs, kind != FAULT_STEP))
            if kind != FAULT_STEP:
                made[name] = index
        results = _guard(lambda: batched(requests), "reset()")
        if not results or len(results) > len(steps) + 1:
            raise ProviderError(f"reset_and_setup answered {len(results or [])} results for "
                                f"{len(steps) + 1} requests")
        _reraise(results[0], "reset()")
        for step, created in zip(steps, results[1:], strict=False):
            sent = self._sent(step)
            _reraise(created, lambda sent=sent: f"setup({_short(sent)})")
            self._created(step, sent, created)
        if len(results) <= len(steps):
            raise ProviderError(f"reset_and_setup stopped after {len(results) - 1} of "
                                f"{len(steps)} steps without saying why")

    def _sent(self, step: dict[str, Any]) -> dict[str, Any]:
        """A step as the provider gets it: references as provider ids."""
        kind, name = next(iter(step.items()))
        fields = self.domain.fields_of_step(step)
        sent = {kind: name}
        for key, value in step.items():
            if key != kind:
                sent[key] = self._to_ids(fields[key], value)
        return sent

    def _created(self, step: dict[str, Any], sent: dict[str, Any], created: Any) -> None:
        kind, name = next(iter(step.items()))
        self.steps.append(step)
        if kind == FAULT_STEP:
            return
        if not isinstance(created, str | int) or isinstance(created, bool) or created == "":
            raise ProviderError(f"setup({_short(sent)}) returned {created!r}; it must return "
                                "the provider's id for the new object as a non-empty str")
        created = str(created)
        coll = self.domain.by_step(kind)
        assert coll is not None
        self.ids[name] = created
        self.names[(coll.name, created)] = name

    def _to_ids(self, ftype: FieldType, value: Any) -> Any:
        if ftype.kind == "ref":
            return self.ids.get(value, value) if isinstance(value, str) else value
        if ftype.kind == "list" and ftype.item is not None and isinstance(value, list):
            return [self._to_ids(ftype.item, v) for v in value]
        return value

    def id_for(self, step: str, ref: Any) -> Any:
        """The provider value for a reference: a known name's id, or a made-up unknown id."""
        coll = self.domain.by_step(step)
        id_type = coll.id if coll else "string"
        raw = unknown_id(id_type, ref) if isinstance(ref, Unknown) else self.ids.get(ref, ref)
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

    def call(self, spec: Spec, args: dict[str, Any]) -> Outcome:
        sent = self.provider_args(spec, args)
        outcome = _guard(lambda: self.provider.call(spec.id, sent), f"call({spec.id})")
        return check_outcome(outcome, spec.id)

    def observe(self, collection: str) -> list[dict[str, Any]]:
        """The provider's view of a collection, in scenario names and declared fields only."""
        coll = self.domain.collections[collection]
        rows = _guard(lambda: self.provider.observe(collection), f"observe({collection!r})")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ProviderError(f"observe({collection!r}) returned {_short(rows)}; it must "
                                "return a list of dicts")
        out = []
        for row in rows:
            if "id" not in row:
                raise ProviderError(f"observe({collection!r}) returned an object without 'id': "
                                    f"{_short(row)}")
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
    if not isinstance(outcome, Outcome):
        raise ProviderError(f"{where} returned {_short(outcome)}, not an Outcome")
    for label, value in (("hresult", outcome.hresult), ("completion", outcome.completion)):
        if value is None and label == "completion":
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise ProviderError(f"{where}: Outcome.{label} is {value!r}, not an int")
        if value < 0:
            raise ProviderError(f"{where}: Outcome.{label} is negative ({value}); return the "
                                f"unsigned 32-bit value (value & 0xFFFFFFFF = "
                                f"0x{value & 0xFFFFFFFF:08X})")
        if value > 0xFFFFFFFF:
            raise ProviderError(f"{where}: Outcome.{label} 0x{value:X} is wider than 32 bits")
    if not isinstance(outcome.outputs, dict):
        raise ProviderError(f"{where}: Outcome.outputs is {_short(outcome.outputs)}, not a dict")
    return outcome


def _refs_to(ftype: FieldType, value: Any, made: dict[str, int], refs: list[list[Any]],
             path: list[Any]) -> Any:
    """`World._to_ids` for a batch: a reference to an object made earlier in the batch becomes
    `[step index, *path]` in `refs` (its place in the step), filled in by the provider."""
    if ftype.kind == "ref":
        if isinstance(value, str) and value in made:
            refs.append([made[value], *path])
        return value
    if ftype.kind == "list" and ftype.item is not None and isinstance(value, list):
        return [_refs_to(ftype.item, v, made, refs, [*path, i]) for i, v in enumerate(value)]
    return value


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


def _short(value: Any, limit: int = 200) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
