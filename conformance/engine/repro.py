"""The shapes of a reproduction: what a failing check gives as its case, in the spec's own
scenario shape, ready to paste under `scenarios` or to run again with `conformance replay`.

Two shapes exist. A call (`CallRepro`): `given` steps, then one `call` with the code it must
give (`expect`); the checks of one planned or drawn case write it (`judging.repro`, from
`Case.scenario`). A sequence (`SequenceRepro`): `given` steps, then `calls`, each entry a call
(`CallEntry`, naming its `method`) or more steps made between two calls (`GivenEntry`); the
`repeat` check, a scenario of several calls, the family's planned sequences and its machine
write it. `DIR/repro/<check>.yaml`, results.json's `repro` of a check and a saved regression
add the `check` they belong to and the `method` (the one failing call's, for a family check);
a regression file adds where it was found (`Found`). These are the shapes the harness writes;
a hand-written file that `replay.load_repro` reads is checked only for `call` or `calls`, and
every reader takes a missing `given` or `expect` as none.
"""

# No `from __future__ import annotations` here: a TypedDict tells its optional keys
# (`__optional_keys__`) only from annotations it can evaluate, and tests/reporting/
# test_shapes.py holds what runs write to the keys declared here.

from typing import TYPE_CHECKING, Any, NotRequired, TypedDict, final

if TYPE_CHECKING:
    from typing_extensions import TypeIs

Step = dict[str, Any]  # one `given` step as a scenario writes it: {"session": "S1", ...}
Args = dict[str, Any]  # a call's arguments as a scenario writes them (`strategies.call_args`)
Expect = str | list[str]  # one code, or the codes any one of which is right


@final  # (final: a type checker tells an entry by `"given" in entry`)
class CallEntry(TypedDict):
    """One call of a sequence."""

    call: Args
    method: NotRequired[str]  # left out in a spec scenario's `calls`: the spec's own method
    # left out where no code is asserted: `Sequence.scenario` (a plan shown by `conformance
    # plan --json`), and the shorter sequences `replay.minimize` tries
    expect: NotRequired[Expect]
    then: NotRequired[dict[str, Any]]  # what the collections hold after it (compared)


@final
class GivenEntry(TypedDict):
    """Steps made between two calls of a sequence."""

    given: list[Step]


Entry = CallEntry | GivenEntry


class CallRepro(TypedDict):
    """One call after `given` steps."""

    given: list[Step]
    call: Args
    expect: Expect
    check: NotRequired[str]  # the check that wrote it (its kind judges a replay)
    method: NotRequired[str]
    then: NotRequired[dict[str, Any]]  # what the collections hold after it (compared)


class SequenceRepro(TypedDict):
    """Calls and steps, one after another, after `given` steps."""

    given: list[Step]
    calls: list[Entry]
    check: NotRequired[str]
    method: NotRequired[str]  # the method of a call that names none (a spec's scenario)


Repro = CallRepro | SequenceRepro


def is_sequence(repro: Repro) -> "TypeIs[SequenceRepro]":
    """A sequence (`calls`), not one call."""
    return "calls" in repro


class Found(TypedDict, total=False):
    """What a regression file adds to its reproduction (`regressions.save`)."""

    provider: str
    seed: int | None
    found: str  # the date, YYYY-MM-DD
    message: str


class SavedCall(CallRepro, Found):
    """A saved regression of one call."""


class SavedSequence(SequenceRepro, Found):
    """A saved regression of a sequence."""


Saved = SavedCall | SavedSequence
