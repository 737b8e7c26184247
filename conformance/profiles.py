"""Profiles: how hard the property checks look (hypothesis examples per check)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    max_examples: int
    description: str


PROFILES = {
    p.name: p
    for p in (
        Profile("quick", 20, "a smoke run for CI, seconds"),
        Profile("ci", 100, "the default: every check, a hundred drawn cases each"),
        Profile("thorough", 1000, "ten times the ci examples, for a release or a lab run"),
    )
}
