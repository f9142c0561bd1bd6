"""LayerNorm tuning: train the norms' scales (and shifts, where present) as deltas:
out + dγ·n(x) + dβ, where n(x) is the normalised input. Works for LayerNorm and RMSNorm (T5, Llama)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from lamina.arch import Layer
from lamina.methods.base import BuildContext, Method, Stage, Strategy, fold


class LayerNormTuning(Strategy):
    """Train the LayerNorm/RMSNorm scales (and shifts, where the norm has them) as deltas."""

    method: Literal["ln"] = "ln"


def normalised(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The norm's output before its affine part."""
    if isinstance(norm, nn.LayerNorm):
        return nn.functional.layer_norm(x, norm.normalized_shape, None, None, norm.eps)
    eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", 1e-6))
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


class LayerNormMethod(Method):
    name, schema, stage = "ln", LayerNormTuning, Stage.BIAS
    title = "LayerNorm tuning"

    def build(self, strategy: LayerNormTuning, layers: list[Layer], ctx: BuildContext) -> nn.Module:
        per_layer = nn.ModuleDict()
        for layer in layers:
            deltas = nn.ParameterDict()
            for path, norm in ctx.mmap.norms(layer):
                key = path.replace(".", "-")
                deltas[f"{key}-weight"] = nn.Parameter(torch.zeros(norm.weight.shape, dtype=norm.weight.dtype))
                if getattr(norm, "bias", None) is not None:
                    deltas[f"{key}-bias"] = nn.Parameter(torch.zeros(norm.bias.shape, dtype=norm.bias.dtype))
            per_layer[str(layer.index)] = deltas
        return per_layer

    def attach(self, module: nn.Module, strategy: LayerNormTuning, layers: list[Layer], ctx: BuildContext) -> None:
        runtime, name = ctx.runtime, ctx.name
        for layer in layers:
            deltas = module[str(layer.index)]
            for path, norm in ctx.mmap.norms(layer):
                key = path.replace(".", "-")

                def forward_hook(mod, args, out, key=key, deltas=deltas):
                    if getattr(module, "merged", False) or not runtime.is_active(name):
                        return out
                    out = out + deltas[f"{key}-weight"] * normalised(mod, args[0])
                    bias = f"{key}-bias"
                    return out + deltas[bias] if bias in deltas else out

                ctx.hook(norm, forward_hook)

    def merge(self, module: nn.Module, strategy: LayerNormTuning, layers: list[Layer], ctx: BuildContext, undo: bool) -> str | None:
        for layer in layers:
            deltas = module[str(layer.index)]
            for path, norm in ctx.mmap.norms(layer):
                key = path.replace(".", "-")
                fold(module, f"{layer.index}.{key}.w", norm.weight.data, deltas[f"{key}-weight"].detach(), undo, exact=ctx.exact_merge)
                if f"{key}-bias" in deltas:
                    fold(module, f"{layer.index}.{key}.b", norm.bias.data, deltas[f"{key}-bias"].detach(), undo, exact=ctx.exact_merge)
        return None
