"""How the harness's work ends: a check's status, a command's exit status, and the root of the
errors that carry both.

Every error the harness raises on purpose derives from `ConformanceError`, whose class says
what it means where it lands: the exit status a command ends with (`exit_status`), the status
of a check it ends (`status`) and how a message introduces it (`prefix`); its family says who
broke the bound (`UsageError`: the user's options or files, `SpecError`, `ProviderFault`,
`WriteError`: the disk). So the runner judges a check with one `except ConformanceError` and
a command exits with one; a new error is one class here or beside the code that raises it,
never another `except` clause.

Two kinds of exception stay outside the root, on purpose: a check's time limit
(`engine.budget.CheckTimedOut`, a BaseException so that a provider's `except Exception` cannot
swallow it) and private signals a module raises and catches itself (`_GiveUp`, `Untranslatable`
...), which never leave it. tests/test_errors.py keeps that list closed.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from conformance.engine.repro import Repro


class ExitStatus(IntEnum):
    """The exit statuses of every command (DESIGN.md, stable)."""

    OK = 0  # the provider conforms (or the command did what was asked)
    FAILS = 1  # it does not conform, or nothing was tested
    USAGE = 2  # a usage, spec or file error: the run could not be made as asked
    UNAVAILABLE = 3  # the provider cannot be loaded or started


EXIT_OK, EXIT_FAILS, EXIT_USAGE, EXIT_UNAVAILABLE = ExitStatus


class Status(StrEnum):
    """A check's status, as results.json spells it (a StrEnum: it is written and compared as
    that string)."""

    PASSED = "passed"
    FAILED = "failed"
    NOT_APPLICABLE = "not_applicable"
    ERROR = "error"


class ConformanceError(Exception):
    """The root of the harness's errors; the class attributes say what one means."""

    exit_status: ClassVar[ExitStatus] = ExitStatus.USAGE
    status: ClassVar[Status] = Status.ERROR
    prefix: ClassVar[str] = ""  # how a check's message or a command's line introduces it
    # what a check it ends records: the codes a failed check marks failed (None: every code
    # of its scenario), the reproduction, details, and planned coverage no case reached
    codes: tuple[str, ...] | None = None
    repro: Repro | None = None
    details: dict[str, Any] | None = None
    unreached: list[dict[str, str]] | None = None

    def lines(self) -> list[str]:
        """What a command prints for it, one problem a line."""
        return [self.describe()]

    def describe(self) -> str:
        """What a check's message or a command's line says."""
        return f"{self.prefix}{self}"


class UsageError(ConformanceError):
    """The options or files the user gave cannot be used as given (exit 2, before any check)."""


class SpecError(ConformanceError):
    """A spec (or domain) cannot be read or evaluated: its checks are errors, a command exits
    2."""

    prefix = "spec error: "


class ProviderFault(ConformanceError):
    """The provider broke the contract (raised, hung, crashed, lied): the check fails."""

    status = Status.FAILED
    exit_status = ExitStatus.FAILS


class WriteError(ConformanceError):
    """The disk refused the harness's results (exit 2 in one line; nothing written is lost)."""
