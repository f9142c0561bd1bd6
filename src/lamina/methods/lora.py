"""LoRA: out + s·B·A·x on chosen projections (nn.Linear or GPT-2 Conv1D, fused slices too).
A Kaiming-uniform, B zero (the model is unchanged at init); s = alpha/r, or a UniPELT gate when gated."""

from __future__ import annotations

import math

import torch
from torch import nn

from lamina.arch import Layer, in_out
from lamina.design import LoRA
from lamina.methods.base import BuildContext, Gate, add_to_slice, fold


class LoRADelta(nn.Module):
    def __init__(self, in_features: int, out_features: int, r: int, dropout: float, like: torch.Tensor):
        super().__init__()
        kw = dict(dtype=like.dtype)
        self.A = nn.Parameter(torch.empty(r, in_features, **kw))
        self.B = nn.Parameter(torch.zeros(out_features, r, **kw))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.dropout(x) @ self.A.t()) @ self.B.t()

    def weight_delta(self, scaling: float) -> torch.Tensor:
        return (self.B @ self.A) * scaling  # [out, in]


class LoRAMethod:
    name = "lora"

    def build(self, strategy: LoRA, layers: list[Layer], ctx: BuildContext) -> nn.Module:
        per_layer = nn.ModuleDict()
        for layer in layers:
            modules = nn.ModuleDict()
            for target in strategy.targets:
                for site in ctx.mmap.sites(layer, target):
                    proj = ctx.projection(layer, site)
                    fan_in, _ = in_out(proj)
                    modules[site.key] = LoRADelta(fan_in, ctx.out_width(layer, site), strategy.r, strategy.dropout, proj.weight)
            if strategy.gated:
                modules["gate"] = Gate(ctx.hidden).to(dtype=layer_dtype(layer))
            per_layer[str(layer.index)] = modules
        return per_layer

    def attach(self, module: nn.Module, strategy: LoRA, layers: list[Layer], ctx: BuildContext) -> None:
        for layer in layers:
            modules = module[str(layer.index)]
            gate = modules["gate"] if "gate" in modules else None
            if gate is not None:
                gate.runtime = ctx.runtime
            for target in strategy.targets:
                for site in ctx.mmap.sites(layer, target):
                    ctx.hook(ctx.projection(layer, site), _hook(modules[site.key], gate, site, strategy.scaling, ctx, module))

    def merge(self, module: nn.Module, strategy: LoRA, layers: list[Layer], ctx: BuildContext, undo: bool) -> str | None:
        if strategy.gated:
            return "gated LoRA (its scale depends on the input)"
        for layer in layers:
            for target in strategy.targets:
                for site in ctx.mmap.sites(layer, target):
                    proj = ctx.projection(layer, site)
                    conv1d = not isinstance(proj, nn.Linear)  # GPT-2 Conv1D stores [in, out]
                    weight = proj.weight.data
                    sl = site.out_slice(weight.shape[1] if conv1d else weight.shape[0])
                    view = weight[:, sl] if conv1d else weight[sl, :]
                    update = module[str(layer.index)][site.key].weight_delta(strategy.scaling)
                    fold(module, f"{layer.index}.{site.key}", view, update.t() if conv1d else update, undo)
        return None


def _hook(delta: LoRADelta, gate: Gate | None, site, scaling: float, ctx: BuildContext, owner: nn.Module):
    runtime, name = ctx.runtime, ctx.name

    def forward_hook(_module, args, out):
        if getattr(owner, "merged", False) or not runtime.is_active(name):
            return out
        x = args[0]
        scale = gate(x) if gate is not None else scaling
        return add_to_slice(out, delta(x) * scale, site)

    return forward_hook


def layer_dtype(layer: Layer) -> torch.dtype:
    return next(layer.block.parameters()).dtype
