"""Implementations under test that ship with the harness (installed as `conformance_providers`)."""
