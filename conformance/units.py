"""Sizes and durations as users type them on a command line (`--worker-memory 512M`,
`--call-timeout 30`): read once here for every command, the agent's included."""

from __future__ import annotations

import argparse
import re


def timeout_seconds(text: str) -> float:
    """A timeout option: seconds >= 0, where 0 means no limit."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("a timeout is a number of seconds >= 0 (0: no limit)")
    return value


_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def memory_size(text: str) -> int:
    """A memory option: bytes, or a number with K, M or G (binary units); 0 means no limit."""
    found = re.fullmatch(r"\s*(\d+)\s*([KMG]?)i?B?\s*", text, re.IGNORECASE)
    if found is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (512M, 2G, or bytes)")
    size = int(found.group(1)) * _SIZE_UNITS[found.group(2).upper()]
    if 0 < size < 64 << 20:
        raise argparse.ArgumentTypeError(
            "a worker's memory limit is at least 64M (the worker's Python itself needs about 40M)"
        )
    return size
