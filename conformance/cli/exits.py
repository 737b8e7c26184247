"""The exit statuses of every command (DESIGN.md, stable): 0 conforms, 1 fails, 2 a usage or
spec error, 3 the provider is unavailable.
"""

from __future__ import annotations

EXIT_OK, EXIT_FAILS, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3
