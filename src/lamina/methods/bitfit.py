"""BitFit: train the bias terms only. Kept as deltas added to the projections' outputs (so the base
biases stay intact and modules without a bias, like T5's, can still take one); LayerNorm betas count
as biases under `which: all`."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from lamina.arch import Layer
from lamina.methods.base import BuildContext, Method, Stage, Strategy, add_to_slice, fold, layer_dtype


class BitFit(Strategy):
    """Train bias terms only (as deltas, so the base stays intact and they merge back into the biases)."""

    method: Literal["bitfit"] = "bitfit"
    which: Literal["all", "attention", "query_value"] = "all"


def bitfit_sites(strategy: BitFit, layer: Layer, ctx: BuildContext):
    if strategy.which == "all":
        return ctx.mmap.all_projections(layer)
    targets = ("q", "k", "v", "o") if strategy.which == "attention" else ("q", "v")
    return [site for t in targets for site in ctx.mmap.sites(layer, t)]


class BitFitMethod(Method):
    name, schema, stage = "bitfit", BitFit, Stage.BIAS
    title = "BitFit (bias deltas)"
    letter = "B"
    in_default_space = True
    search_options = {"which": "all"}

    def build(self, strategy: BitFit, layers: list[Layer], ctx: BuildContext) -> nn.Module:
        per_layer = nn.ModuleDict()
        for layer in layers:
            kw = dict(dtype=layer_dtype(layer))
            deltas = nn.ParameterDict()
            for site in bitfit_sites(strategy, layer, ctx):
                deltas[site.key] = nn.Parameter(torch.zeros(ctx.out_width(layer, site), **kw))
            if strategy.which == "all":
                for path, norm in ctx.mmap.norms(layer):
                    if getattr(norm, "bias", None) is not None:
                        deltas[path.replace(".", "-")] = nn.Parameter(torch.zeros(norm.bias.shape, **kw))
            per_layer[str(layer.index)] = deltas
        return per_layer

    def attach(self, module: nn.Module, strategy: BitFit, layers: list[Layer], ctx: BuildContext) -> None:
        runtime, name = ctx.runtime, ctx.name
        for layer in layers:
            deltas = module[str(layer.index)]
            for site in bitfit_sites(strategy, layer, ctx):
                ctx.hook(ctx.projection(layer, site), _hook(module, deltas, site.key, site, runtime, name))
            if strategy.which == "all":
                for path, norm in ctx.mmap.norms(layer):
                    key = path.replace(".", "-")
                    if key in deltas:
                        ctx.hook(norm, _hook(module, deltas, key, None, runtime, name))

    def merge(self, module: nn.Module, strategy: BitFit, layers: list[Layer], ctx: BuildContext, undo: bool) -> str | None:
        targets = []
        for layer in layers:
            deltas = module[str(layer.index)]
            for site in bitfit_sites(strategy, layer, ctx):
                targets.append((ctx.projection(layer, site), deltas, site.key, site))
            if strategy.which == "all":
                for path, norm in ctx.mmap.norms(layer):
                    if path.replace(".", "-") in deltas:
                        targets.append((norm, deltas, path.replace(".", "-"), None))
        if any(getattr(m, "bias", None) is None for m, *_ in targets):
            return "BitFit on modules that have no bias of their own"
        for target, deltas, key, site in targets:
            bias = target.bias.data
            view = bias[site.out_slice(bias.shape[0])] if site is not None else bias
            fold(module, f"{id(deltas)}.{key}", view, deltas[key].detach(), undo, exact=ctx.exact_merge)
        return None


def _hook(owner: nn.Module, deltas: nn.ParameterDict, key: str, site, runtime, name: str):
    def forward_hook(_module, _args, out):
        if getattr(owner, "merged", False) or not runtime.is_active(name):
            return out
        delta = deltas[key]
        return add_to_slice(out, delta, site) if site is not None else out + delta

    return forward_hook
