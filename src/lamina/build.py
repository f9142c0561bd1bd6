"""Build and count: turn a design into the modules it trains and report what they cost, without
touching any model. `lamina.apply` attaches what this builds; the budget solver and `lamina params`
count with it on the meta device. It reads every method from the registry (`lamina.methods`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from lamina.arch import ModelMap, head_params, hidden_size
from lamina.design import Design, DesignError, Group
from lamina.methods import METHODS
from lamina.methods.base import BuildContext, Runtime
from lamina.methods.prompt import SoftPrompt, prompt_module
from lamina.util import human


class AdapterSet(nn.Module):
    """Everything one named adapter trains: groups[g][method], the soft prompt, the head copies."""

    def __init__(self, design: Design):
        super().__init__()
        self.groups = nn.ModuleDict()
        self.prompt: SoftPrompt | None = None
        self.heads = nn.ModuleDict()
        self.design = design
        self.context: BuildContext | None = None  # set by apply: the model map and hooks it was attached with

    def parts(self):
        """(group index, group, strategy, method, module) for every strategy, in design order."""
        for g, group in enumerate(self.design.groups):
            for s in group.strategies:
                yield g, group, s, METHODS[s.method], self.groups[str(g)][s.method]


@dataclass
class Row:
    group: str
    layers: str
    method: str
    trainable: int
    stored: int


@dataclass
class Report:
    """What a design trains on a model. `stored` counts what a save keeps (prefix MLPs collapsed)."""

    design: Design
    rows: list[Row]
    base_params: int
    base_head_params: int
    name: str = "default"
    budget: dict | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def trainable(self) -> int:
        return sum(r.trainable for r in self.rows)

    @property
    def stored(self) -> int:
        return sum(r.stored for r in self.rows)

    @property
    def head_trainable(self) -> int:
        return sum(r.trainable for r in self.rows if r.method == "head")

    def percent(self, with_head: bool = True) -> float:
        if self.design.full:
            return 100.0
        if with_head:
            return 100.0 * self.trainable / self.base_params
        base = self.base_params - self.base_head_params
        return 100.0 * (self.trainable - self.head_trainable) / max(base, 1)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "design": self.design.to_dict(),
            "rows": [r.__dict__ for r in self.rows],
            "trainable": self.trainable,
            "stored": self.stored,
            "base_params": self.base_params,
            "base_head_params": self.base_head_params,
            "trainable_percent": self.percent(True),
            "trainable_percent_without_head": self.percent(False),
            "budget": self.budget,
        }

    def table(self) -> str:
        lines = [f"{'group':<6} {'layers':<14} {'method':<10} {'trainable':>12} {'stored':>12}"]
        for r in self.rows:
            lines.append(f"{r.group:<6} {r.layers:<14} {r.method:<10} {r.trainable:>12,} {r.stored:>12,}")
        lines.append(f"{'total':<32} {self.trainable:>12,} {self.stored:>12,}")
        lines.append(
            f"base model {self.base_params:,} params ({human(self.base_params)}); trainable "
            f"{self.percent(True):.4f}% with head, {self.percent(False):.4f}% without head"
        )
        if self.budget:
            b = self.budget
            lines.append(f"budget: target {b['target']:,}, achieved {b['achieved']:,} ({b['error_percent']:+.2f}%), allocation {b['allocation']}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def group_layers(group: Group, mmap: ModelMap):
    return [mmap.layers[mmap.global_index(group.stack, i)] for i in group.layers]


def describe(group: Group) -> str:
    return f"{group.stack} {group.first}-{group.last}" if group.stack else f"{group.first}-{group.last}"


def check(design: Design, mmap: ModelMap) -> None:
    design.check_depth(mmap.num_layers, mmap.stacks if any(g.stack for g in design.groups) else None)
    if design.prompt is not None and mmap.positions is not None and design.prompt.length >= mmap.positions:
        raise DesignError(f"prompt.length: {design.prompt.length} prompt tokens leave no room for the input in this "
                          f"model's {mmap.positions} positions (max_position_embeddings); use at most {mmap.positions - 1}")
    seen: dict[int, int] = {}
    for i, g in enumerate(design.groups):
        for layer in group_layers(g, mmap):
            if layer.index in seen:
                raise DesignError(f"groups[{i}] and groups[{seen[layer.index]}] overlap at layer {layer.index}")
            seen[layer.index] = i
        for j, s in enumerate(g.strategies):
            method = METHODS[s.method]
            method.check(s, mmap, f"groups[{i}].strategies[{j}]")
            if method.size(s) is None:
                raise DesignError(f"groups[{i}]: {s.method} has no size; give one or a design budget")


def build_adapters(design: Design, ctx: BuildContext) -> AdapterSet:
    adapters = AdapterSet(design)
    for g, group in enumerate(design.groups):
        layers = group_layers(group, ctx.mmap)
        adapters.groups[str(g)] = nn.ModuleDict({s.method: METHODS[s.method].build(s, layers, ctx) for s in group.strategies})
    if design.prompt is not None:
        embed = prompt_module(ctx).get_input_embeddings() if hasattr(prompt_module(ctx), "get_input_embeddings") else prompt_module(ctx).embed_tokens
        adapters.prompt = SoftPrompt(design.prompt, embed)
    return adapters


def report_rows(adapters: AdapterSet, design: Design, mmap: ModelMap, head_count: int) -> list[Row]:
    out = []
    for g, group in enumerate(design.groups):
        for s in group.strategies:
            module = adapters.groups[str(g)][s.method]
            trained = sum(p.numel() for p in module.parameters())
            stored = METHODS[s.method].stored_count(module, s)
            out.append(Row(str(g), describe(group), s.method, trained, stored))
    if adapters.prompt is not None:
        n = adapters.prompt.embedding.numel()
        out.append(Row("-", "input", "prompt", n, n))
    if design.train_head and head_count:
        out.append(Row("-", "head", "head", head_count, head_count))
    return out


def dry_rows(design: Design, model: nn.Module, mmap: ModelMap) -> list[Row]:
    """Count a concrete design on the meta device (no memory, model untouched)."""
    ctx = BuildContext(mmap, hidden_size(model), Runtime(), "dry-run", model)
    with torch.device("meta"):
        adapters = build_adapters(design, ctx)
    return report_rows(adapters, design, mmap, head_params(model, mmap))


