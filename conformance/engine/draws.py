"""Hypothesis's draws made to depend on the run's seed alone (recorded and replayed runs, the
family machines): the one place the harness reaches into hypothesis's internals."""

from __future__ import annotations

from typing import Any


def pin_draws() -> Any:
    """Make hypothesis's draws depend on the seed alone, for a recorded or replayed run; returns
    the function that undoes it.

    Hypothesis (6.131 and later) mixes into its draws constants read from the source of every
    local module loaded in the process, so a worker of `-n 2` whose provider runs in another
    process, and a replay that loads no provider at all, would draw other cases from the same
    seed. Only the global constants are kept. This reaches into hypothesis's internals; where
    they differ, nothing is changed (and a replay may then stop with a clear mismatch)."""
    try:
        from hypothesis.internal.conjecture import providers as hp

        empty = hp.Constants(
            integers=hp.SortedSet(),
            floats=hp.SortedSet(key=hp.float_to_int),
            bytes=hp.SortedSet(),
            strings=hp.SortedSet(),
        )
        original = hp._get_local_constants
        hp.CONSTANTS_CACHE.cache.clear()
    except (ImportError, AttributeError, TypeError):
        return lambda: None
    hp._get_local_constants = lambda: empty

    def unpin() -> None:
        hp._get_local_constants = original
        hp.CONSTANTS_CACHE.cache.clear()

    return unpin
