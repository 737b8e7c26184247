"""Profiles: how hard the property checks look (hypothesis examples per check)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    max_examples: int
    exhaustive: int
    steer: bool
    description: str


PROFILES = {
    p.name: p
    for p in (
        Profile("quick", 20, 150, False, "a smoke run for CI, seconds"),
        Profile("ci", 100, 1000, False, "the default: 1000 enumerated, 100 drawn cases per check"),
        Profile("thorough", 1000, 10000, True, "10x ci, steered to unseen codes"),
    )
}
