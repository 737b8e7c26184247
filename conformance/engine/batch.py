"""A batch: one test case's requests (reset, setups, the call, the observes after it) at once.

A provider may offer two abilities beyond the contract of `conformance.provider`, both
optional and each a `typing.Protocol` here: `batch(requests)` (`BatchingProvider`: a worker
process answers a test case in one round trip) and `submit(batches)` (`SubmittingProvider`:
it takes the next test cases before their turn). A request is `{"op", ...params}` with the
marks that say how the batch goes on: `refs` / `int_refs` put the ids that earlier setups
returned into its params, `expect_id` / `expect_outcome` stop the batch after a result that
is no id or no Outcome, `may_fail` lets it go on after an error.

The rules are the same wherever a batch runs: in this process, one request at a time
(`run_each`, for the world and for a worker without batches), or on an agent's side (which
reads the same `BatchItem`s off the wire, `conformance.remote.protocol.parse_batch`). This
module knows no wire format: it imports nothing of the harness but the provider contract.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, runtime_checkable

from conformance.errors import ProviderFault
from conformance.provider import Outcome


@runtime_checkable
class BatchingProvider(Protocol):
    """A provider that takes a test case's requests at once: what each returned (a call's
    Outcome), or the exception that ended the batch, by `stops`' rules."""

    def batch(self, requests: list[dict[str, Any]]) -> list[Any]: ...


@runtime_checkable
class SubmittingProvider(Protocol):
    """A provider that takes the test cases coming next (each a batch starting with a reset)
    before the engine asks for them; `batch` with the same requests reads the answer. False:
    nothing was taken."""

    def submit(self, batches: list[list[dict[str, Any]]]) -> bool: ...


class RefError(ProviderFault, ValueError):
    """A batch ref to an answer that is no id, or to a place its request's params lack."""


class BatchItem(NamedTuple):
    """One request of a batch: what to run, where earlier answers go, and when to stop."""

    op: str
    params: dict[str, Any]
    refs: tuple[tuple[Any, ...], ...] = ()
    int_refs: tuple[tuple[Any, ...], ...] = ()
    expect_id: bool = False
    expect_outcome: bool = False
    may_fail: bool = False


def batch_item(request: dict[str, Any]) -> BatchItem:
    """A batch request the harness built (trusted: no checks) as a BatchItem."""
    params = {k: v for k, v in request.items() if k not in MARKS}
    return BatchItem(
        request["op"],
        params,
        tuple(map(tuple, request.get("refs", ()))),
        tuple(map(tuple, request.get("int_refs", ()))),
        request.get("expect_id") is True,
        request.get("expect_outcome") is True,
        request.get("may_fail") is True,
    )


MARKS = frozenset({"op", "refs", "int_refs", "expect_id", "expect_outcome", "may_fail"})


def fill_refs(item: BatchItem, results: list[Any]) -> dict[str, Any]:
    """The item's params with the ids of earlier results put in; RefError when a ref points
    at a result that is no id, or at a place the params do not have. An int ref whose id is
    not all digits goes in as a string, as `World.id_for` passes it."""
    params = item.params
    for refs, as_int in ((item.refs, False), (item.int_refs, True)):
        for ref in refs:
            source = results[ref[0]]
            if not is_id(source):
                raise RefError(f"batch ref to answer {ref[0]}, which is no id")
            text = str(source)
            value: Any = int(text) if as_int and text.isdigit() else text
            params = put_ref(params, list(ref[1:]), value)
    return params


def put_ref(params: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    """A copy of `params` with `value` at `path`, the containers on the path copied; a path
    that leads nowhere is a RefError."""
    top = dict(params)
    node: Any = top
    for key in path[:-1]:
        try:
            child = node[key]
        except (KeyError, IndexError, TypeError):
            raise RefError(f"batch ref path {path!r} leads nowhere") from None
        if isinstance(child, dict):
            child = dict(child)
        elif isinstance(child, list):
            child = list(child)
        else:
            raise RefError(f"batch ref path {path!r} leads nowhere")
        node[key] = child
        node = child
    try:
        node[path[-1]] = value
    except (IndexError, TypeError):
        raise RefError(f"batch ref path {path!r} leads nowhere") from None
    return top


def stops(item: BatchItem, result: Any) -> bool:
    """Whether a batch ends after `item` gave `result` (a value, or the exception raised)."""
    if isinstance(result, BaseException):
        return not item.may_fail
    if item.expect_id and not is_id(result):
        return True
    return item.expect_outcome and outcome_problem(result, item.op) is not None


def run_each(items: list[BatchItem], perform: Callable[[str, dict[str, Any]], Any]) -> list[Any]:
    """A batch run one request at a time through `perform(op, params)`, with the batch's
    rules (refs filled in, the stops): each result, or the Exception it raised."""
    results: list[Any] = []
    for item in items:
        try:
            result = perform(
                item.op, fill_refs(item, results) if item.refs or item.int_refs else item.params
            )
        except Exception as exc:
            result = exc
        results.append(result)
        if stops(item, result):
            break
    return results


def outcome_problem(outcome: Any, where: str) -> str | None:
    """Why the harness refuses what a call returned (not an Outcome of unsigned 32-bit codes
    and a dict of outputs), or None: one rule for the engine and for a batch's stop."""
    if not isinstance(outcome, Outcome):
        return f"{where} returned {short(outcome)}, not an Outcome"
    for label, value in (("hresult", outcome.hresult), ("completion", outcome.completion)):
        if value is None and label == "completion":
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{where}: Outcome.{label} is {value!r}, not an int"
        if value < 0:
            return (
                f"{where}: Outcome.{label} is negative ({value}); return the unsigned "
                f"32-bit value (value & 0xFFFFFFFF = 0x{value & 0xFFFFFFFF:08X})"
            )
        if value > 0xFFFFFFFF:
            return f"{where}: Outcome.{label} 0x{value:X} is wider than 32 bits"
    if not isinstance(outcome.outputs, dict):
        return f"{where}: Outcome.outputs is {short(outcome.outputs)}, not a dict"
    return None


def is_id(value: Any) -> bool:
    """What `setup` must return: a non-empty string or an integer (not a bool)."""
    return (isinstance(value, str) and value != "") or (
        isinstance(value, int) and not isinstance(value, bool)
    )


def short(value: Any, limit: int = 200) -> str:
    """A value as JSON for a message, cut to `limit` characters; a provider's value that
    cannot be shown (its repr raises, it nests too deep) is named, never raised."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=_shown)
    except (TypeError, ValueError, RecursionError):
        text = _shown(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shown(value: Any) -> str:
    try:
        return repr(value)
    except RecursionError:
        return f"<a {type(value).__name__} nested too deep to show>"
    except Exception as exc:
        return f"<a {type(value).__name__} whose repr raised {type(exc).__name__}>"
