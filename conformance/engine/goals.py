"""What a spec's plan must cover: its goals (rules, codes, effects; in ci also conditions,
argument classes and faults), each with the tier of profile that asks for it, and the classes
an argument value falls in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conformance.engine.case_space import boundary_strings, is_flag, is_text, param_field, relevant
from conformance.engine.world import Unknown
from conformance.spec.cel_text import operands

if TYPE_CHECKING:
    from conformance.spec.domain import Domain
    from conformance.spec.model import Param, Spec

GOAL_KINDS = ("rules", "codes", "effects", "conditions", "arguments", "faults")
TIER_OF = {
    "rules": 0,
    "codes": 0,
    "effects": 0,
    "conditions": 1,
    "arguments": 1,
    "faults": 1,
    "pairs": 0,
    "steps": 0,
    "transitions": 1,
}  # the last three: a family's sequences


@dataclass(frozen=True)
class Goal:
    """One coverage item of a spec: a rule, a code, an operand deciding alone, ..."""

    key: str
    kind: str  # one of GOAL_KINDS
    label: str

    @property
    def tier(self) -> int:
        return TIER_OF[self.kind]


# -- goals ------------------------------------------------------------------------------------


def goals_of(spec: Spec, domain: Domain, tier: int) -> dict[str, Goal]:
    """The coverage items of a spec up to `tier`, in a fixed order."""
    goals: list[Goal] = []
    for rule in spec.rules:
        goals.append(
            Goal(
                f"rule:{rule.index}",
                "rules",
                f"rule {rule.index} ({spec.file}:{spec.line('rules', rule.index)})",
            )
        )
    for code in spec.codes:
        goals.append(Goal(f"code:{code.symbol}", "codes", code.symbol))
    for rule in spec.rules:
        for coll in rule.effects:
            goals.append(
                Goal(f"effect:{rule.index}:{coll}", "effects", f"rule {rule.index} changes {coll}")
            )
    if tier >= 1:
        for rule in spec.rules:
            joiner, parts = operands(rule.when)
            if not joiner and parts == ["true"]:
                continue
            for i, part in enumerate(parts):
                alone = "false" if joiner != "||" else "true"
                label = (
                    f"rule {rule.index} operand {i + 1} of {len(parts)} ({joiner}) decides "
                    f"alone ({alone}): {part}"
                    if joiner
                    else f"rule {rule.index} reached and false: {part}"
                )
                goals.append(Goal(f"condition:{rule.index}:{i}", "conditions", label))
        for param in spec.params:
            for cls in declared_classes(spec, domain, param):
                goals.append(Goal(f"arg:{param.name}:{cls}", "arguments", f"{param.name}: {cls}"))
        for fault in relevant(spec, domain)[1]:
            goals.append(Goal(f"fault:{fault}", "faults", f"fault {fault}"))
    return {g.key: g for g in goals}


def declared_classes(spec: Spec, domain: Domain, param: Param) -> list[str]:
    """The argument classes a parameter's declaration promises to the planner."""
    if param.is_out:
        return ["valid pointer", "NULL"] if param.nullable else []
    out: list[str] = []
    ftype = param_field(domain, param)
    if param.refers:
        out += ["existing object", "unknown object"]
    elif ftype is not None and ftype.kind == "enum":
        out += [f"value {short_text(v)}" for v in ftype.choices]
    elif (ftype is not None and ftype.kind == "bool") or is_flag(param):
        out += ["true", "false"]
    if param.values:
        out.append(EXISTING_VALUE)
    if not param.refers and (is_text(param) or (ftype is not None and ftype.kind == "string")):
        out += [
            string_class(s, ftype.max_length if ftype else None) for s in boundary_strings(ftype)
        ]
        out += ["non-ASCII the code page holds", "non-ASCII outside the code page"]
        if param.values and spec.charset == "ansi":
            out.append(EXISTING_OUTSIDE)
    out += [f"special {name}" for name in param.special]
    if param.nullable:
        out.append("NULL")
    return list(dict.fromkeys(out))


def string_class(text: str, max_length: int | None) -> str:
    if text == "":
        return "empty string"
    if max_length and len(text) == max_length:
        return f"longest allowed ({max_length})"
    if max_length and len(text) > max_length:
        return f"one past the longest ({max_length + 1})"
    if len(text) == 1:
        return "one character"
    return ""


def arg_classes(
    spec: Spec,
    domain: Domain,
    param: Param,
    value: Any,
    state: dict[str, list[dict[str, Any]]],
    ansi: Any,
) -> set[str]:
    """The classes one argument value belongs to (see `declared_classes`)."""
    if param.is_out:
        return {"NULL"} if value is None else {"valid pointer"}
    if value is None:
        return {"NULL"}
    out: set[str] = set()
    if isinstance(value, Unknown):
        return {"unknown object"}
    if param.refers and isinstance(value, str):
        out.add("existing object")
    for name in param.special:
        if spec.constants.get(name) == value and not isinstance(value, bool):
            out.add(f"special {name}")
    ftype = param_field(domain, param)
    if ftype is not None and ftype.kind == "enum" and value in ftype.choices:
        out.add(f"value {short_text(value)}")
    if isinstance(value, bool):
        out.add("true" if value else "false")
    if param.values and _holds_value(param.values, value, state, domain):
        out.add(EXISTING_VALUE)
        if isinstance(value, str) and spec.charset == "ansi" and ansi(value) != value:
            out.add(EXISTING_OUTSIDE)
    if isinstance(value, str) and not param.refers:
        cls = string_class(value, ftype.max_length if ftype else None)
        if cls:
            out.add(cls)
        if not value.isascii():
            out.add(
                "non-ASCII the code page holds"
                if ansi(value) == value
                else "non-ASCII outside the code page"
            )
    return out


EXISTING_VALUE = "an existing object's value"
# where an A form and its W twin part: the W form finds the object, the A form's converted
# string does not
EXISTING_OUTSIDE = "an existing object's value outside the code page"


def _holds_value(
    values: str, value: Any, state: dict[str, list[dict[str, Any]]], domain: Domain
) -> bool:
    """Whether `value` is the `field` of an object of `step` (`values: step.field`)."""
    step, _, fname = values.partition(".")
    coll = domain.by_step(step)
    return coll is not None and any(o.get(fname) == value for o in state.get(coll.name, []))


def short_text(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= 40 else text[:37] + "..."
