"""The example database: failures found once are tried first next time.

Hypothesis also stores its Pareto front of targeted examples there; for a harness that calls
`target()` on every example that turns each example into a disk write, so only the primary
(failing-example) keys are kept.
"""

from __future__ import annotations

from hypothesis.database import DirectoryBasedExampleDatabase


class FailuresDatabase(DirectoryBasedExampleDatabase):
    """A directory database that keeps failing examples and nothing else."""

    @staticmethod
    def _kept(key: bytes) -> bool:
        return not (key.endswith(b".pareto") or key.endswith(b".secondary"))

    def save(self, key: bytes, value: bytes) -> None:
        if self._kept(key):
            super().save(key, value)

    def move(self, src: bytes, dest: bytes, value: bytes) -> None:
        if self._kept(dest):
            super().move(src, dest, value)
        else:
            self.delete(src, value)
