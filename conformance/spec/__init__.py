"""The spec model: what a YAML spec, a domain and the code table say, loaded, checked and
compiled (source -> model, domain, codes, expression -> catalog; validate and metadata check them).

The bottom of the harness: it imports nothing of the engine, the runner or the command line.
"""
