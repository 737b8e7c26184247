"""The command line: `conformance run`, `validate`, `plan`, `report`, ... (main.py), and the
commands that stand alone (doctor, scaffold, arrivals).
"""

from conformance.cli.main import main

__all__ = ["main"]
