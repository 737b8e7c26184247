"""What every test folder shares: the helpers beside this file (support.py, the broken,
hostile and costly providers, the reliability corpus) importable from any folder, and the
`slow` marker (pyproject.toml) that `pytest -m "not slow"` leaves out for a fast loop."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
