"""Merge / unmerge: fold every mergeable delta into the base weights in place. By default no copies are
kept (a 70B model's merged projections would double): unmerge subtracts (or divides) again and checks
each tensor against a fingerprint, failing clearly outside a 1e-5 tolerance; `exact=True` keeps the
originals so `unmerge` restores them bit for bit. Unmergeable parts (adapters, prefix, prompt, gated LoRA, biases the
base module does not have) keep running as hooks.

This is the one merge loop: `lamina.merge`, `lamina.unmerge` and the merged export (`lamina.export`)
all go through `merge_parts`. Parts merge group by group in attach order (the methods' `Stage` rule),
so the merged weights compute what the hooks computed; unmerge runs in the reverse order. A rescaling
(Stage.SCALE, IA³) merges only when every delta before it in its group merged too: it would otherwise
scale a delta that is still added afterwards by a hook.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from lamina.build import AdapterSet, group_layers
from lamina.inject import adapters_of, attach_order, runtime_of
from lamina.methods import METHODS
from lamina.methods.base import Stage


@dataclass
class Part:
    group: int
    first: int
    last: int
    strategy: object
    kept: str | None  # None: merged; else why it still runs as a hook

    @property
    def label(self) -> str:
        return f"group {self.group} (layers {self.first}-{self.last}) {self.strategy.method}"


def merge_parts(adapters: AdapterSet, undo: bool = False, exact: bool = False) -> list[Part]:
    """Merge (or unmerge) every part of one adapter set; returns each part and whether it merged.
    `exact`: keep copies of the merged base tensors (unmerge then restores them bit for bit)."""
    ctx, design, parts = adapters.context, adapters.design, []
    ctx.exact_merge = exact
    for g, group in enumerate(design.groups):
        layers = group_layers(group, ctx.mmap)
        order = attach_order(group.strategies)
        kept_before = False
        for s in (reversed(order) if undo else order):
            method = METHODS[s.method]
            if method.stage == Stage.SCALE and kept_before and not undo:
                reason = f"{s.method} (it would rescale a delta in this group that cannot be merged)"
            else:
                reason = method.merge(adapters.groups[str(g)][s.method], s, layers, ctx, undo)
            kept_before = kept_before or (reason is not None and method.stage < Stage.SCALE)
            parts.append(Part(g, group.first, group.last, s, reason))
    return parts


def _fold_all(model: nn.Module, name: str | None, undo: bool, exact: bool = False) -> list[str]:
    names = [name] if name else list(runtime_of(model).active)
    kept = []
    for adapter_name in names:
        adapters = adapters_of(model)[adapter_name]
        kept += [f"group {p.group} ({p.first}-{p.last}): {p.kept}" for p in merge_parts(adapters, undo, exact) if p.kept]
        if adapters.prompt is not None:
            kept.append("prompt tuning (extra input tokens)")
    return kept


def merge(model: nn.Module, name: str | None = None, exact: bool = False) -> list[str]:
    """Merge the active adapter (or `name`); returns what could not be merged and still runs as hooks.
    `exact=True` keeps the originals (unmerge restores bit for bit, at the cost of a copy of every
    merged tensor); by default unmerge recomputes and checks within a tolerance."""
    return _fold_all(model, name, undo=False, exact=exact)


def unmerge(model: nn.Module, name: str | None = None) -> None:
    _fold_all(model, name, undo=True)
