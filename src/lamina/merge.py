"""Merge / unmerge: fold every mergeable delta (LoRA, BitFit, LayerNorm tuning) into the base weights
in place, keeping the originals so `unmerge` restores them exactly. Unmergeable parts (adapters,
prefix, prompt, gated LoRA, biases the base module does not have) keep running as hooks."""

from __future__ import annotations

from torch import nn

from lamina.inject import adapters_of, group_layers, runtime_of
from lamina.methods import METHODS


def _fold_all(model: nn.Module, name: str | None, undo: bool) -> list[str]:
    runtime = runtime_of(model)
    names = [name] if name else list(runtime.active)
    kept = []
    for adapter_name in names:
        adapters = adapters_of(model)[adapter_name]
        ctx = adapters.__dict__["ctx"]
        for g, group in enumerate(adapters.design.groups):
            layers = group_layers(group, ctx.mmap)
            for s in group.strategies:
                reason = METHODS[s.method].merge(adapters.groups[str(g)][s.method], s, layers, ctx, undo)
                if reason:
                    kept.append(f"group {g} ({group.first}-{group.last}): {reason}")
        if adapters.prompt is not None:
            kept.append("prompt tuning (extra input tokens)")
    return kept


def merge(model: nn.Module, name: str | None = None) -> list[str]:
    """Merge the active adapter (or `name`); returns what could not be merged and still runs as hooks."""
    return _fold_all(model, name, undo=False)


def unmerge(model: nn.Module, name: str | None = None) -> None:
    _fold_all(model, name, undo=True)
