"""The provider guide's table of what arrives in setup() and call() is generated from the
domain files and the specs, and held to what the engine really sends."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from conformance_providers.reference import ReferenceProvider
from support import ROOT, cli

from conformance.cli.arrivals import BEGIN, END, render
from conformance.provider import Outcome
from conformance.spec.catalog import load_catalog
from conformance.spec.domain import FAULT_STEP

pytestmark = pytest.mark.slow  # whole runs and processes: left out of the fast loop

GUIDE = ROOT / "docs" / "writing-a-provider.md"
LOG = "CONFORMANCE_ARRIVALS_LOG"  # where Recording writes (the run imports this file anew)


class Recording(ReferenceProvider):
    """The reference, writing down every reset, step and call as it arrives."""

    def _note(self, *entry: Any) -> None:
        with open(os.environ[LOG], "a", encoding="utf-8") as log:
            log.write(json.dumps(entry, default=str) + "\n")

    def reset(self) -> None:
        self._note("reset", None, None)
        super().reset()

    def setup(self, step: dict[str, Any]) -> str:
        created = super().setup(step)
        self._note("setup", step, created)
        return created

    def call(self, method_id: str, args: dict[str, Any]) -> Outcome:
        self._note("call", [method_id, args], None)
        return super().call(method_id, args)


def test_the_guide_shows_the_generated_tables() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    shown = text[text.index(BEGIN) : text.index(END) + len(END)]
    assert shown == render(load_catalog()), "run python -m conformance.cli.arrivals and paste"


def test_the_engine_sends_what_the_tables_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LOG, str(tmp_path / "arrived.jsonl"))
    code, _, _ = cli(
        "run",
        "--in-process",
        "--provider",
        f"{__file__}:Recording",
        "--out",
        str(tmp_path),
        "--regressions",
        str(tmp_path / "r"),
        "-k",
        "not stateful",
    )
    assert code == 0
    seen = [
        json.loads(line)
        for line in (tmp_path / "arrived.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    catalog = load_catalog()
    returned: set[str] = set()
    steps = calls = 0
    for what, arrived, created in seen:
        if what == "reset":
            returned = set()
            continue
        if what == "setup":
            steps += 1
            kind = next(iter(arrived))
            domain = next(
                d
                for d in catalog.domains.values()
                if (kind == FAULT_STEP and arrived[FAULT_STEP] in d.faults)
                or d.by_step(kind) is not None
            )
            fields = domain.fields_of_step(arrived)
            assert set(arrived) == {kind, *fields}, arrived  # every field, defaults filled
            for name, ftype in fields.items():
                if ftype.kind == "ref":
                    assert arrived[name] is None or str(arrived[name]) in returned, arrived
                if ftype.kind == "list" and ftype.item and ftype.item.kind == "ref":
                    assert all(str(v) in returned for v in arrived[name]), arrived
            if created is not None:
                returned.add(str(created))
            continue
        calls += 1
        method, args = arrived
        spec = catalog.specs[method]
        domain = catalog.domain_of(spec)
        for param in spec.params:
            value = args.get(param.name, "absent")
            if param.is_out:
                assert value == "absent" or (value is None and param.nullable), (method, args)
            elif (
                param.refers
                and value is not None
                and value not in [spec.constants[s] for s in param.special]
                and value not in _written(spec, param.name)
            ):
                id_type = domain.by_step(param.refers).id  # type: ignore[union-attr]
                assert _an_id(id_type, value, returned), (method, param.name, value)
            elif value is None:
                assert param.nullable, (method, param.name)
        if spec.this_object:
            id_type = domain.by_step(spec.this_object).id  # type: ignore[union-attr]
            assert _an_id(id_type, args["this"], returned), (method, args["this"])
    assert steps > 1000 and calls > 500


def _an_id(id_type: str, value: Any, returned: set[str]) -> bool:
    """An id as the table says it arrives: one setup returned, or the documented unknown form."""
    if str(value) in returned:
        return True
    if id_type == "guid":
        return isinstance(value, str) and uuid.UUID(value) is not None
    if id_type == "uint32":
        return isinstance(value, int) and value >= 2147418113
    return isinstance(value, str) and value.startswith("unknown-")


def _written(spec: Any, name: str) -> list[Any]:
    """Values a scenario of the spec passes literally (a scenario may pass any value)."""
    calls = [s.call for s in spec.scenarios] + [
        c.get("call") or {} for s in spec.scenarios for c in s.calls
    ]
    return [call[name] for call in calls if name in call]
