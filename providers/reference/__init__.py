"""The bundled reference provider: an in-memory simulator of the documented behaviour.

It is written from the API reference pages alone, independently of the harness's specs,
so that the two can disagree and a disagreement points at one of them.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from conformance.provider import Outcome, Provider, Unsupported

from ._iscsi import IscsiWorld
from ._vds import VdsWorld
from ._vpc import VpcWorld
from ._world import World

__all__ = ["ReferenceProvider"]


class ReferenceProvider(Provider):
    """Routes each step, fault, call and collection to the family world that owns it."""

    name = "reference"

    def __init__(self, *, code_page: str = "cp1252") -> None:
        """`code_page` is the ANSI code page the A entry points narrow their text to."""
        self._worlds: tuple[World, ...] = (VdsWorld(), IscsiWorld(code_page), VpcWorld())
        self._by_step = self._index("steps")
        self._by_fault = self._index("faults")
        self._by_method = self._index("methods")
        self._by_collection = self._index("collections")
        self._fault_serial = itertools.count(1)

    def _index(self, attribute: str) -> dict[str, World]:
        """Name -> owning world; a name claimed twice would make routing ambiguous."""
        index: dict[str, World] = {}
        for world in self._worlds:
            for name in getattr(world, attribute):
                if name in index:
                    raise RuntimeError(f"{attribute[:-1]} {name!r} claimed by two families")
                index[name] = world
        return index

    def capabilities(self) -> dict[str, list[str]]:
        return {
            "methods": list(self._by_method),
            "steps": [*self._by_step, "fault"],
            "faults": list(self._by_fault),
            "observe": list(self._by_collection),
        }

    def reset(self) -> None:
        for world in self._worlds:
            world.reset()
        self._fault_serial = itertools.count(1)

    def setup(self, step: dict[str, Any]) -> str:
        if not isinstance(step, Mapping) or not step:
            raise ValueError(f"a step is a non-empty mapping, got {step!r}")
        kind, value = next(iter(step.items()))
        fields = {key: field for key, field in step.items() if key != kind}
        if kind == "fault":
            world = self._by_fault.get(value)
            if world is None:
                raise Unsupported(f"fault kind {value!r}")
            world.inject(value, fields)
            return f"fault-{next(self._fault_serial)}"
        world = self._by_step.get(kind)
        if world is None:
            raise Unsupported(f"step kind {kind!r}")
        return world.create(kind, fields)

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        world = self._by_method.get(method_id)
        if world is None:
            raise Unsupported(f"method {method_id!r}")
        return world.call(method_id, args)

    def observe(self, collection: str) -> list[dict[str, Any]]:
        world = self._by_collection.get(collection)
        if world is None:
            raise Unsupported(f"collection {collection!r}")
        return world.observe(collection)
