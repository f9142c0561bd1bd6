"""The task head (classifier, QA span head, pooler when the head reads it) trains as a per-adapter
copy: the base head stays frozen and untouched, each named adapter brings its own trained head."""

from __future__ import annotations

import copy

from torch import nn

from lamina.methods.base import BuildContext


def head_key(path: str) -> str:
    return path.replace(".", "-")


def build_heads(ctx: BuildContext) -> nn.ModuleDict:
    heads = nn.ModuleDict()
    for path in ctx.mmap.head:
        clone = copy.deepcopy(ctx.model.get_submodule(path))
        for p in clone.parameters():
            p.requires_grad_(True)
        heads[head_key(path)] = clone
    return heads


def attach_heads(heads: nn.ModuleDict, ctx: BuildContext) -> None:
    runtime, name = ctx.runtime, ctx.name
    for path in ctx.mmap.head:
        clone = heads[head_key(path)]

        def forward_hook(_module, args, kwargs, output, clone=clone):
            return clone(*args, **kwargs) if runtime.is_active(name) else output

        ctx.hook(ctx.model.get_submodule(path), forward_hook, with_kwargs=True)
