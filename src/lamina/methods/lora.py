"""LoRA: out + s·B·A·x on chosen projections (nn.Linear or GPT-2 Conv1D, fused slices too).
A Kaiming-uniform, B zero (the model is unchanged at init); s = alpha/r, alpha/sqrt(r) with `rslora`
(Kalajdzievski 2023), or a UniPELT gate when gated.

`dora` (Liu et al. 2024, DoRA): the weight is re-parameterised as magnitude · direction,
W' = m ⊙ (W + s·B·A) / ‖W + s·B·A‖ (row norms, one per output feature, treated as a constant in the
backward pass as in the paper). m starts at ‖W‖, so the model is unchanged at init; m trains with A, B.
Merging writes W' exactly."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, StrictBool, StrictInt, field_validator, model_validator
from torch import nn

from lamina.arch import Layer, in_out
from lamina.methods.base import BuildContext, Gate, Method, Stage, Strategy, add_to_slice, fold, layer_dtype


class LoRA(Strategy):
    """Low-rank update W + s·B·A on chosen projections; `gated` replaces s by a UniPELT gate."""

    method: Literal["lora"] = "lora"
    r: StrictInt | None = Field(8, description="rank; None = sized by the budget solver")
    alpha: float | None = Field(None, description="scaling numerator; default 2·r")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    targets: tuple[str, ...] = ("q", "v")
    gated: StrictBool = False
    rslora: StrictBool = Field(False, description="rank-stabilised scaling alpha/sqrt(r) instead of alpha/r")
    dora: StrictBool = Field(False, description="weight-decomposed LoRA: a trained magnitude per output feature")

    @field_validator("r")
    @classmethod
    def _positive(cls, value):
        if value is not None and value <= 0:
            raise ValueError("r must be > 0")
        return value

    @field_validator("targets")
    @classmethod
    def _non_empty(cls, value):
        if not value:
            raise ValueError("targets must name at least one projection")
        return value

    @model_validator(mode="after")
    def _combinations(self):
        if self.gated and self.dora:
            raise ValueError("dora and gated cannot be combined (a gate replaces the scale DoRA normalises)")
        return self

    @property
    def scaling(self) -> float:
        alpha = self.alpha if self.alpha is not None else 2.0 * self.r
        return alpha / math.sqrt(self.r) if self.rslora else alpha / self.r


class LoRADelta(nn.Module):
    def __init__(self, in_features: int, out_features: int, r: int, dropout: float, like: torch.Tensor, magnitude=None):
        super().__init__()
        kw = dict(dtype=like.dtype)
        self.A = nn.Parameter(torch.empty(r, in_features, **kw))
        self.B = nn.Parameter(torch.zeros(out_features, r, **kw))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if magnitude is not None:
            self.magnitude = nn.Parameter(magnitude.detach().clone().to(like.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.dropout(x) @ self.A.t()) @ self.B.t()

    def weight_delta(self, scaling: float) -> torch.Tensor:
        return (self.B @ self.A) * scaling  # [out, in]


def weight_view(proj: nn.Module, site) -> tuple[torch.Tensor, bool]:
    """The site's slice of the projection's weight, as stored ([in, out] for GPT-2 Conv1D), and whether
    it is stored transposed."""
    conv1d = not isinstance(proj, nn.Linear)
    weight = proj.weight.data
    sl = site.out_slice(weight.shape[1] if conv1d else weight.shape[0])
    return (weight[:, sl] if conv1d else weight[sl, :]), conv1d


def dora_scale(delta: LoRADelta, weight: torch.Tensor, scaling: float) -> torch.Tensor:
    """m / ‖W + s·B·A‖ per output feature; `weight` is [out, in]. The norm is detached (DoRA §4.3)."""
    norm = (weight + delta.weight_delta(scaling).to(weight.dtype)).norm(p=2, dim=1).detach()
    return delta.magnitude / norm


class LoRAMethod(Method):
    name, schema, stage = "lora", LoRA, Stage.WEIGHT
    size_field, letter = "r", "L"
    in_default_space = True
    search_options = {"targets": ["q", "v"]}

    def build(self, strategy: LoRA, layers: list[Layer], ctx: BuildContext) -> nn.Module:
        per_layer = nn.ModuleDict()
        for layer in layers:
            modules = nn.ModuleDict()
            for target in strategy.targets:
                for site in ctx.mmap.sites(layer, target):
                    proj = ctx.projection(layer, site)
                    fan_in, _ = in_out(proj)
                    magnitude = None
                    if strategy.dora:
                        view, conv1d = weight_view(proj, site)
                        magnitude = (view.t() if conv1d else view).norm(p=2, dim=1)
                    modules[site.key] = LoRADelta(fan_in, ctx.out_width(layer, site), strategy.r, strategy.dropout, proj.weight, magnitude)
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
                    proj = ctx.projection(layer, site)
                    ctx.hook(proj, _hook(modules[site.key], gate, proj, site, strategy, ctx, module))

    def merge(self, module: nn.Module, strategy: LoRA, layers: list[Layer], ctx: BuildContext, undo: bool) -> str | None:
        if strategy.gated:
            return "gated LoRA (its scale depends on the input)"
        for layer in layers:
            for target in strategy.targets:
                for site in ctx.mmap.sites(layer, target):
                    view, conv1d = weight_view(ctx.projection(layer, site), site)
                    delta = module[str(layer.index)][site.key]
                    update = delta.weight_delta(strategy.scaling)
                    if strategy.dora and not undo:
                        weight = view.t() if conv1d else view
                        merged = dora_scale(delta, weight, strategy.scaling).unsqueeze(1) * (weight + update.to(weight.dtype))
                        update = merged - weight
                    fold(module, f"{layer.index}.{site.key}", view, update.t() if conv1d else update, undo)
        return None


def _hook(delta: LoRADelta, gate: Gate | None, proj: nn.Module, site, strategy: LoRA, ctx: BuildContext, owner: nn.Module):
    runtime, name, scaling = ctx.runtime, ctx.name, strategy.scaling

    def forward_hook(_module, args, out):
        if getattr(owner, "merged", False) or not runtime.is_active(name):
            return out
        x = args[0]
        scale = gate(x) if gate is not None else scaling
        update = delta(x) * scale
        if strategy.dora:
            view, conv1d = weight_view(proj, site)
            factor = dora_scale(delta, view.t() if conv1d else view, scaling)
            base = out[..., site.out_slice(out.shape[-1])] if site.parts > 1 else out
            if getattr(proj, "bias", None) is not None:
                base = base - proj.bias[site.out_slice(proj.bias.shape[0])]
            update = (factor - 1) * base + factor * update  # = m·(W + sBA)x/‖·‖ − Wx
        return add_to_slice(out, update, site)

    return forward_hook
