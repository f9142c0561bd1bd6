"""Bottleneck adapters: h + g·up(act(down(h))). `pfeiffer` wraps the FFN output, `houlsby` wraps the
attention output projection and the FFN output, `parallel` reads the FFN input and adds to the FFN
output. `up` starts at zero, so the model is unchanged at init; `g` is 1, or a UniPELT gate."""

from __future__ import annotations

from torch import nn

from lamina.arch import Layer
from lamina.design import Adapter
from lamina.methods.base import BuildContext, Gate, first_tensor
from lamina.methods.lora import layer_dtype

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "swish": nn.SiLU}


class Bottleneck(nn.Module):
    def __init__(self, hidden: int, width: int, activation: str, gated: bool):
        super().__init__()
        self.down = nn.Linear(hidden, width)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(width, hidden)
        nn.init.normal_(self.down.weight, std=0.02)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.gate = Gate(hidden) if gated else None

    def forward(self, h):
        out = self.up(self.act(self.down(h)))
        return out * self.gate(h) if self.gate is not None else out


def placements(strategy: Adapter) -> tuple[str, ...]:
    """Which outputs get an adapter: canonical target names."""
    return {"pfeiffer": ("ffn_out",), "houlsby": ("o", "ffn_out"), "parallel": ("ffn_out",)}[strategy.placement]


class AdapterMethod:
    name = "adapter"

    def build(self, strategy: Adapter, layers: list[Layer], ctx: BuildContext) -> nn.Module:
        width = strategy.width(ctx.hidden)
        per_layer = nn.ModuleDict()
        for layer in layers:
            kw = dict(dtype=layer_dtype(layer))
            per_layer[str(layer.index)] = nn.ModuleDict(
                {where: Bottleneck(ctx.hidden, width, strategy.activation, strategy.gated).to(**kw) for where in placements(strategy)}
            )
        return per_layer

    def attach(self, module: nn.Module, strategy: Adapter, layers: list[Layer], ctx: BuildContext) -> None:
        runtime, name = ctx.runtime, ctx.name
        for layer in layers:
            for where, bottleneck in module[str(layer.index)].items():
                if bottleneck.gate is not None:
                    bottleneck.gate.runtime = runtime
                out_site = ctx.mmap.sites(layer, where)[-1]
                if strategy.placement == "parallel":
                    in_site = ctx.mmap.sites(layer, "ffn_in")[0]
                    ctx.hook(ctx.projection(layer, in_site), _remember_input(bottleneck), pre=True, with_kwargs=True)
                ctx.hook(ctx.projection(layer, out_site), _add(bottleneck, strategy.placement == "parallel", runtime, name))

    def merge(self, module, strategy, layers, ctx, undo) -> str | None:
        return "bottleneck adapters (a non-linear insert)"


def _remember_input(bottleneck: Bottleneck):
    def pre_hook(_module, args, kwargs):
        bottleneck.__dict__["_ffn_input"] = first_tensor(args, kwargs, "input")

    return pre_hook


def _add(bottleneck: Bottleneck, parallel: bool, runtime, name: str):
    def forward_hook(_module, _args, out):
        if not runtime.is_active(name):
            return out
        source = bottleneck.__dict__.pop("_ffn_input") if parallel else out
        return out + bottleneck(source)

    return forward_hook
