"""Drafting specs from Windows API reference pages: `conformance extract PAGE... --out DIR`.

Read each page in whatever format it came (page, sdkapi, win32md, rendered), group the pages
by method, merge each group into one spec (merge), note documentation defects (findings) and
write the drafts, keeping what a person already wrote in an existing spec (roundtrip). This
package depends on the spec model and its YAML only, never on the engine.
"""
