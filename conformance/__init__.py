"""conformance: Windows API return-code contracts as data, and a harness that tests them."""

from conformance.provider import Outcome, Provider, Unsupported, load

__all__ = ["Outcome", "Provider", "Unsupported", "load"]
__version__ = "0.1.0"
