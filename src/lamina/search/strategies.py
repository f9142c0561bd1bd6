"""The search strategies by name: each is a module with `preflight(engine)` (fail early, one line) and
`search(engine, root) -> final design` (the design the engine then trains once and writes out)."""

from __future__ import annotations

from importlib import import_module

MODULES = {"greedy": "stages", "joint": "joint", "one-shot": "oneshot"}


def strategy_module(strategy: str):
    """The module implementing `strategy` (imported on first use: greedy never loads the supernet code)."""
    return import_module(f"lamina.search.{MODULES[strategy]}")
