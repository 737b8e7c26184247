"""The agent protocol: how a harness talks to a provider served by `conformance agent`.

Transport: a byte stream (a TCP connection, or an agent's stdin/stdout) carrying
newline-delimited JSON, one UTF-8 object per line, each at most `MAX_MESSAGE` bytes
(1 MiB unless the agent says otherwise). Strings are sent ASCII-escaped, so text the
harness draws (non-ASCII, lone surrogates) crosses unchanged.

Hello, the first exchange of every connection (the harness speaks first)::

    -> {"hello": 1, "token": "...", "client": "conformance/0.1"}
    <- {"welcome": 1, "provider": NAME, "capabilities": {...},
        "limits": {"max_message": BYTES, "call_timeout": S, "idle_timeout": S | null}}
    <- {"refused": REASON}          then the agent closes the connection

`hello` and `welcome` carry the protocol version (`PROTOCOL_VERSION`); the token may be left
out when the agent has none (it then listens on loopback only). `capabilities` is the
provider's own `capabilities()`. Each connection has its own provider instance, created
after the hello: reconnecting gives a fresh world.

Requests, one at a time (the harness waits for each response)::

    -> {"id": N, "op": "capabilities"}
    -> {"id": N, "op": "reset"}
    -> {"id": N, "op": "setup", "step": {...}}
    -> {"id": N, "op": "call", "method": METHOD_ID, "args": {...}}
    -> {"id": N, "op": "observe", "collection": NAME}
    -> {"id": N, "op": "close"}     the agent closes the provider, answers, then disconnects
    <- {"id": N, "ok": true, "result": ...}
    <- {"id": N, "ok": false, "error": {"kind": KIND, "message": TEXT}}

`id` is an int or a string chosen by the harness and echoed back; a request the agent could
not read at all is answered with `"id": null`. A `call` result is an Outcome as
`{"hresult": int, "outputs": {...}, "completion": int | null}` (out-parameters that are not
JSON become their repr string), or `{"not_outcome": VALUE}` when the provider returned
something else, so the harness can say so exactly as it would in-process. Error kinds:

- "unsupported": the provider raised Unsupported; the harness raises Unsupported again.
- "provider": the provider raised; `type` and `text` carry the exception's class name and
  message, `message` both ("ValueError: bad id").
- "protocol": the request was malformed (not JSON, too large, unknown op, bad fields); the
  connection goes on.
- "timeout": the provider did not answer within the agent's per-call timeout; the agent then
  closes the connection, since its provider is stuck.

Optional ops, offered in the welcome's `"ops"` list (an agent that sends no such list offers
none, and a harness then makes the same requests one at a time)::

    -> {"id": N, "op": "batch", "requests": [REQUEST, ...]}
    <- {"id": N, "ok": true, "result": [ANSWER, ...]}

A batch saves round trips: each REQUEST is a request without an id (`{"op": "setup", "step":
{...}}`; not close, not batch), run in order exactly as if sent alone, each under the per-call
timeout; each ANSWER is `{"ok": true, "result": ...}` or `{"ok": false, "error": {...}}`. The
batch stops after the first request that fails (unless it is marked `"may_fail": true`: an
observe the harness reads whatever its neighbours give), after a request marked
`"expect_id": true`
whose result is not an id (a non-empty string, or an integer), and after a request marked
`"expect_outcome": true` whose result is not an Outcome the harness accepts
(`conformance.engine.batch.outcome_problem`, where the rules of a batch live):
the answers then end there, and the requests after it were not run. A request may take ids
from earlier answers of its batch: `"refs": [[K, PATH...], ...]` puts answer K's result (as a
string) at PATH in its params (keys and list indexes, e.g. `[0, "step", "Disks", 1]`);
`"int_refs"` does the same with an id of decimal digits as an integer (a uint32 id, as the
harness passes one). A malformed batch is one protocol error. So a test case is one round
trip: reset, its setups, the call (`expect_outcome`) and the observes the harness reads next.

The agent answers requests in the order they came, so a harness may send a request before the
answer to the previous one has arrived: it sends the test cases it knows are coming (a
property check's enumerated cases, each a batch that starts with a reset) while it judges
earlier ones, and reads their answers in order.

When the agent ends a connection on its own (idle client, too many malformed messages) it
first sends `{"bye": REASON}`, so the harness knows its next request was never run.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from conformance.engine.batch import BatchItem
from conformance.errors import ProviderFault
from conformance.provider import Outcome, Unsupported

PROTOCOL_VERSION = 1
MAX_MESSAGE = 1 << 20  # bytes per line, newline excluded
CLIENT = "conformance/0.1"
OPS = ("capabilities", "reset", "setup", "call", "observe", "close")
OPTIONAL_OPS = ("batch",)  # offered in the welcome's "ops"
BATCHABLE = frozenset({"capabilities", "reset", "setup", "call", "observe"})
# Fields each op requires, with their JSON type: checked before the provider sees anything.
_PARAMS: dict[str, dict[str, type]] = {
    "capabilities": {},
    "reset": {},
    "close": {},
    "setup": {"step": dict},
    "call": {"method": str, "args": dict},
    "observe": {"collection": str},
    "batch": {"requests": list},
}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,99}")


class ProtocolError(ProviderFault, ValueError):
    """A message that breaks the protocol; `id` is the request's id when it could be read."""

    def __init__(self, message: str, request_id: Any = None):
        super().__init__(message)
        self.request_id = request_id


class MessageTooLarge(ProtocolError):
    """A line longer than the limit; it has been discarded up to its newline."""


class TruncatedMessage(ProtocolError):
    """The stream ended in the middle of a line (a half-closed or dropped connection)."""


class RemoteProviderError(ProviderFault):
    """Base of the exceptions re-raised on the harness side for a provider's exception.

    Subclasses carry the remote exception's class name, so the harness's message
    ("provider raised in call(X): ValueError: ...") reads as it would in-process.
    """


class RemoteProtocolError(ProviderFault):
    """The agent said our request was malformed (a bug on the harness side, or a limit)."""


# -- values --------------------------------------------------------------------------------------


def json_safe(value: Any) -> Any:
    """A JSON-encodable copy: containers kept, keys as strings, anything else as its repr."""
    kind = type(value)  # exact types first: this runs on every answer the agent sends
    if kind in _PLAIN:
        return value
    if kind is dict:
        return {
            k if type(k) is str else str(k): v if type(v) in _PLAIN else json_safe(v)
            for k, v in value.items()
        }
    if kind is list:
        return [v if type(v) in _PLAIN else json_safe(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    try:
        return repr(value)
    except Exception as exc:  # a provider's object whose repr raises: say so, do not die
        raise ValueError(
            f"a {type(value).__name__} in it has no repr ({type(exc).__name__}: {exc})"
        ) from None


_PLAIN = frozenset({str, int, bool, type(None)})


def outcome_to_json(outcome: Any, safe: bool = True) -> dict[str, Any]:
    """An Outcome as JSON; anything else is wrapped so the harness can reject it itself.
    With `safe` false the values are left for `encode` to make JSON-safe when it must."""
    convert = json_safe if safe else _same
    if not isinstance(outcome, Outcome):
        return {"not_outcome": convert(outcome)}
    return {
        "hresult": convert(outcome.hresult),
        "outputs": convert(outcome.outputs),
        "completion": convert(outcome.completion),
    }


def _same(value: Any) -> Any:
    return value


def outcome_from_json(data: Any) -> Any:
    """The Outcome a `call` result stands for (no validation: `check_outcome` does that)."""
    if isinstance(data, dict) and "not_outcome" in data:
        return data["not_outcome"]
    if not isinstance(data, dict) or "hresult" not in data:
        return data
    return Outcome(data["hresult"], data.get("outputs", {}), data.get("completion"))


# -- errors --------------------------------------------------------------------------------------


def error_from_exception(exc: BaseException) -> dict[str, Any]:
    """How a provider's exception travels: Unsupported keeps its kind, the rest is 'provider'."""
    if isinstance(exc, Unsupported):
        return {"kind": "unsupported", "message": str(exc)}
    name = type(exc).__name__
    return {"kind": "provider", "message": f"{name}: {exc}", "type": name, "text": str(exc)}


def exception_from_error(error: Any) -> Exception:
    """The exception the harness side raises for an error response."""
    if not isinstance(error, dict):
        return RemoteProtocolError(f"the agent sent a malformed error: {error!r:.200}")
    kind, message = error.get("kind"), str(error.get("message", ""))
    if kind == "unsupported":
        return Unsupported(message)
    if kind == "provider":
        return _remote_exception(str(error.get("type", "")), str(error.get("text", message)))
    if kind == "timeout":
        return TimeoutError(message)
    if kind == "protocol":
        return RemoteProtocolError(f"the agent refused the request: {message}")
    return RemoteProtocolError(f"the agent sent an error of unknown kind {kind!r}: {message}")


_REMOTE_TYPES: dict[str, type[RemoteProviderError]] = {}
_REMOTE_TYPES_LOCK = threading.Lock()


def _remote_exception(type_name: str, text: str) -> RemoteProviderError:
    """An exception named like the remote one (a new class, never an imported one)."""
    if not _IDENTIFIER.fullmatch(type_name):
        type_name = "RemoteProviderError"
    with _REMOTE_TYPES_LOCK:
        cls = _REMOTE_TYPES.get(type_name)
        if cls is None:
            cls = type(type_name.rpartition(".")[2], (RemoteProviderError,), {})
            _REMOTE_TYPES[type_name] = cls
    return cls(text)


# -- messages ------------------------------------------------------------------------------------


def _repr_or_refuse(value: Any) -> str:
    """What JSON cannot hold, as its repr; a repr that raises makes the message unsendable
    (a ValueError the agent turns into a failure naming it), never a dead agent."""
    try:
        return repr(value)
    except Exception as exc:
        raise ValueError(
            f"a {type(value).__name__} in it has no repr ({type(exc).__name__}: {exc})"
        ) from None


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=_repr_or_refuse)


def encode(message: dict[str, Any]) -> bytes:
    """One message as a line; values JSON cannot hold become their repr."""
    try:
        text = _ENCODER.encode(message)
    except RecursionError:
        raise ValueError("it nests deeper than JSON can be written here") from None
    except (TypeError, ValueError):
        try:
            text = _ENCODER.encode(json_safe(message))
        except RecursionError:
            raise ValueError("it holds itself (a reference cycle) or nests too deeply") from None
    return text.encode("ascii") + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """One line as a JSON object, or ProtocolError saying what is wrong with it."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        message = json.loads(text)
    except ValueError as exc:
        raise ProtocolError(f"malformed JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError("malformed JSON: nested too deeply") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"a message is a JSON object, got {type(message).__name__}")
    return message


def hello(token: str | None) -> dict[str, Any]:
    message: dict[str, Any] = {"hello": PROTOCOL_VERSION, "client": CLIENT}
    if token is not None:
        message["token"] = token
    return message


def request(request_id: int, op: str, **params: Any) -> dict[str, Any]:
    return {"id": request_id, "op": op, **params}


def parse_request(message: dict[str, Any]) -> tuple[Any, str, dict[str, Any]]:
    """(id, op, params) of a request, or ProtocolError naming the first thing wrong."""
    request_id = message.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        raise ProtocolError("a request needs an 'id' (an int or a string)")
    return (request_id, *_op_params(message, request_id))


def _op_params(message: dict[str, Any], request_id: Any) -> tuple[str, dict[str, Any]]:
    op = message.get("op")
    if op not in _PARAMS:
        raise ProtocolError(f"unknown op {op!r}; ops: {', '.join(OPS + OPTIONAL_OPS)}", request_id)
    params = {}
    for name, kind in _PARAMS[op].items():
        value = message.get(name)
        if not isinstance(value, kind):
            raise ProtocolError(
                f"{op} needs {name!r} as a JSON {_JSON_NAMES[kind]}, got {json.dumps(value)[:80]}",
                request_id,
            )
        params[name] = value
    return op, params


_JSON_NAMES: dict[type, str] = {dict: "object", str: "string", list: "array"}


def parse_batch(request_id: Any, requests: list[Any]) -> list[BatchItem]:
    """Each request of a batch as a BatchItem, or ProtocolError naming the first bad one."""
    out = []
    for index, item in enumerate(requests):
        params = _fast_params(item)
        if params is None:
            params = _slow_batch_params(request_id, index, item)  # raises what is wrong
        out.append(
            BatchItem(
                item["op"],
                params,
                _refs(item, "refs", index, request_id) if "refs" in item else (),
                _refs(item, "int_refs", index, request_id) if "int_refs" in item else (),
                item.get("expect_id") is True,
                item.get("expect_outcome") is True,
                item.get("may_fail") is True,
            )
        )
    return out


def _fast_params(item: Any) -> dict[str, Any] | None:
    """A well-formed batch request's params, or None (`_slow_batch_params` says what is
    wrong): the agent reads every request of every batch, so the usual case goes first."""
    try:
        fields = _BATCH_FIELDS[item["op"]]
    except (TypeError, KeyError):
        return None
    params = {}
    for name, kind in fields:
        value = item.get(name)
        if type(value) is not kind:
            return None
        params[name] = value
    return params


_BATCH_FIELDS = {op: tuple(fields.items()) for op, fields in _PARAMS.items() if op in BATCHABLE}


def _slow_batch_params(request_id: Any, index: int, item: Any) -> dict[str, Any]:
    """A batch request's params checked one by one, for the message when one is wrong."""
    if not isinstance(item, dict):
        raise ProtocolError(f"batch request {index} is not a JSON object", request_id)
    op, params = _op_params(item, request_id)
    if op not in BATCHABLE:
        raise ProtocolError(f"batch request {index}: op {op!r} cannot be batched", request_id)
    return params


def _refs(
    item: dict[str, Any], key: str, index: int, request_id: Any
) -> tuple[tuple[Any, ...], ...]:
    refs = item[key]
    if not isinstance(refs, list) or not all(
        isinstance(r, list)
        and len(r) >= 2
        and isinstance(r[0], int)
        and not isinstance(r[0], bool)
        and 0 <= r[0] < index
        and all(isinstance(k, str | int) and not isinstance(k, bool) for k in r[1:])
        for r in refs
    ):
        raise ProtocolError(
            f"batch request {index}: {key!r} must be a list of [EARLIER_INDEX, KEY_OR_INDEX, ...]",
            request_id,
        )
    return tuple(tuple(r) for r in refs)


def ok(request_id: Any, result: Any) -> dict[str, Any]:
    return {"id": request_id, "ok": True, "result": result}


def failure(request_id: Any, kind: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"id": request_id, "ok": False, "error": {"kind": kind, "message": message, **extra}}


def describe(op: str, params: dict[str, Any]) -> str:
    """A request as the harness names it in messages: call(M), setup({...}), reset()."""
    if op == "call":
        return f"call({params.get('method')})"
    if op == "observe":
        return f"observe({params.get('collection')!r})"
    if op == "setup":
        return f"setup({json.dumps(params.get('step'), default=repr)[:120]})"
    if op == "batch":
        items = [i for i in params.get("requests") or [] if isinstance(i, dict)]
        ops = [str(i.get("op")) for i in items]
        shown = " ... ".join(
            describe(o, i) for o, i in zip(ops, items, strict=True) if o in ("reset", "call")
        )
        return f"a batch of {len(items)} requests" + (f" ({shown})" if shown else "")
    return f"{op}()"


# -- framing -------------------------------------------------------------------------------------


class LineReader:
    """Reads bounded lines from a `recv(n) -> bytes` function (b"" at end of stream).

    A line over the limit is skipped up to its newline, so the connection stays in step
    after refusing it; memory never holds more than the limit plus one chunk.
    """

    CHUNK = 1 << 16

    def __init__(self, recv: Callable[[int], bytes], limit: int = MAX_MESSAGE):
        self._recv = recv
        self.limit = limit
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf known to hold no newline

    def read_line(self) -> bytes | None:
        """The next line without its newline; None when the stream ended cleanly."""
        while True:
            newline = self._buf.find(b"\n", self._scanned)
            if newline >= 0:
                line = bytes(self._buf[:newline])
                del self._buf[: newline + 1]
                self._scanned = 0
                if len(line) > self.limit:
                    raise self._too_large(len(line))
                return line
            self._scanned = len(self._buf)
            if len(self._buf) > self.limit:
                raise self._too_large(self._discard())
            chunk = self._recv(self.CHUNK)
            if not chunk:
                self._at_end()  # raises when the stream ended inside a message
                return None
            self._buf += chunk

    def _discard(self) -> int:
        """Drop the rest of an oversized line; returns how many bytes it had."""
        size = len(self._buf)
        self._buf.clear()
        self._scanned = 0
        while True:
            chunk = self._recv(self.CHUNK)
            if not chunk:
                raise TruncatedMessage(
                    f"the stream ended inside an oversized message "
                    f"({size} bytes, limit {self.limit})"
                )
            newline = chunk.find(b"\n")
            if newline >= 0:
                self._buf += chunk[newline + 1 :]
                return size + newline
            size += len(chunk)

    def _at_end(self) -> None:
        if self._buf:
            size = len(self._buf)
            self._buf.clear()
            self._scanned = 0
            raise TruncatedMessage(
                f"the connection was closed in the middle of a message "
                f"({size} bytes without a newline)"
            )
        return None

    def _too_large(self, size: int) -> MessageTooLarge:
        return MessageTooLarge(
            f"message of {size} bytes is over the limit of {self.limit} bytes; it was discarded"
        )


class Watchdog:
    """Runs an action when an armed deadline passes: one polling thread, not one per call.

    Arming and disarming only set a few attributes under a lock, so a per-call timeout
    costs microseconds; the action runs on the watchdog's thread, which is why it must
    only unblock the stuck side (send a last message, close the stream).
    """

    def __init__(self, poll: float = 0.05):
        self._poll = poll
        self._lock = threading.Lock()
        self._deadline: float | None = None
        self._action: Callable[[], None] | None = None
        self._fired = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float | None, action: Callable[[], None]) -> None:
        """Run `action` unless disarmed within `seconds` (None: no deadline)."""
        with self._lock:
            self._fired = False
            self._deadline = None if seconds is None else time.monotonic() + seconds
            self._action = action
        if seconds is not None and self._thread is None:
            self._thread = threading.Thread(
                target=self._watch, name="conformance-watchdog", daemon=True
            )
            self._thread.start()

    def extend(self, seconds: float | None) -> None:
        """Move an armed deadline to `seconds` from now, keeping its action: one store, no
        lock, for the agent's per-request limit inside a batch."""
        if seconds is not None:
            self._deadline = time.monotonic() + seconds

    @property
    def fired(self) -> bool:
        return self._fired

    def disarm(self) -> bool:
        """False when the deadline had already passed (the action ran or is running)."""
        with self._lock:
            self._deadline = None
            return not self._fired

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(self._poll):
            with self._lock:
                due = self._deadline is not None and time.monotonic() >= self._deadline
                if due:
                    self._deadline, self._fired = None, True
                action = self._action if due else None
            if action is not None:
                action()
