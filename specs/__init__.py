"""The bundled specs, domains and schemas, installed as package data (no code lives here)."""
