"""Bottleneck adapters: h + g·up(act(down(h))). `pfeiffer` wraps the FFN output, `houlsby` wraps the
attention output projection and the FFN output, `parallel` reads the FFN input and adds to the FFN
output. `up` starts at zero, so the model is unchanged at init; `g` is 1, or a UniPELT gate."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, StrictBool, StrictInt, field_validator, model_validator
from torch import nn

from lamina.arch import Layer
from lamina.methods.base import BuildContext, Gate, Method, Real, Rider, Stage, Strategy, add_product, first_tensor, layer_dtype


class Adapter(Strategy):
    """Bottleneck adapter h + up(act(down(h))); `pfeiffer` after the FFN, `houlsby` also after attention,
    `parallel` beside the FFN (input: the FFN input, output added to the FFN output)."""

    method: Literal["adapter"] = "adapter"
    bottleneck: StrictInt | None = Field(None, description="bottleneck width; or give reduction_factor")
    reduction_factor: Real | None = Field(None, description="bottleneck = hidden / reduction_factor")
    placement: Literal["pfeiffer", "houlsby", "parallel"] = "pfeiffer"
    activation: Literal["relu", "gelu", "tanh", "swish"] = "relu"
    gated: StrictBool = False

    @field_validator("bottleneck", "reduction_factor")
    @classmethod
    def _positive(cls, value, info):
        if value is not None and value <= 0:
            raise ValueError(f"{info.field_name} must be > 0")
        return value

    @model_validator(mode="after")
    def _size(self):
        if self.bottleneck is not None and self.reduction_factor is not None:
            raise ValueError("give either bottleneck or reduction_factor, not both")
        return self

    def width(self, hidden: int) -> int | None:
        if self.bottleneck is not None:
            return self.bottleneck
        if self.reduction_factor is not None:
            return max(1, int(hidden // self.reduction_factor))
        return None

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "swish": nn.SiLU}


class Bottleneck(Rider, nn.Module):
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

    def rider_rows(self):
        return self.down.weight, self.down.bias

    def add_to(self, out: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """out + self(h), with the gate g applied to the bottleneck activations and the up projection's
        bias folded into one product that also does the addition:
        out + g·(z·Uᵀ + b) = out + [g·z, g]·[U, b]ᵀ (one addmm; no full-width temporaries). A gate computes
        the down projection with its own (it reads the same h: carried, see Rider)."""
        if (out.shape[:-1] != h.shape[:-1] or not out.dtype == h.dtype == self.up.weight.dtype
                or torch.is_autocast_enabled(out.device.type)):
            return out + self(h)
        if self.gate is None:
            z = self.act(self.down(h))
            column = torch.ones((*z.shape[:-1], 1), dtype=z.dtype, device=z.device)
        else:
            g = self.gate(h)
            down = self.recall(h)
            z = self.act(down if down is not None else self.down(h)) * g
            column = g.expand(*z.shape[:-1], 1)
        weight = torch.cat([self.up.weight, self.up.bias.unsqueeze(1)], dim=1)  # [hidden, width + 1]
        z = torch.cat([z, column], dim=-1)
        return add_product(out, z, weight.t())


def placements(strategy: Adapter) -> tuple[str, ...]:
    """Which outputs get an adapter: canonical target names."""
    return {"pfeiffer": ("ffn_out",), "houlsby": ("o", "ffn_out"), "parallel": ("ffn_out",)}[strategy.placement]


class AdapterMethod(Method):
    name, schema, stage = "adapter", Adapter, Stage.INSERT
    title = "bottleneck adapters"
    size_field, letter = "bottleneck", "A"
    in_default_space = True
    search_options = {"placement": "pfeiffer"}

    def size_options(self) -> tuple[str, ...]:
        return ("bottleneck", "reduction_factor")

    def size(self, strategy: Adapter):
        return strategy.bottleneck if strategy.bottleneck is not None else strategy.reduction_factor

    def resized(self, strategy: Adapter, size: int | None) -> Adapter:
        return strategy.model_copy(update={"bottleneck": size, "reduction_factor": None})

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
                    bottleneck.gate.causal = layer.stack == "decoder"
                    bottleneck.gate.carry(bottleneck)  # its down projection reads the gate's input
                out_site = ctx.mmap.sites(layer, where)[-1]
                if strategy.placement == "parallel":
                    in_site = ctx.mmap.sites(layer, "ffn_in")[0]
                    ctx.hook(ctx.projection(layer, in_site), _remember_input(bottleneck), pre=True, with_kwargs=True)
                ctx.hook(ctx.projection(layer, out_site), _add(bottleneck, strategy.placement == "parallel", runtime, name))

    def scaled_tensors(self, module: nn.Module, strategy: Adapter) -> dict:
        """The up projection: its output (the adapter's whole contribution) is linear in it."""
        return {f"{name}.up.{t}": 0.0 for name, sub in module.named_modules() if isinstance(sub, Bottleneck)
                for t in ("weight", "bias")}

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
        return bottleneck.add_to(out, source)

    return forward_hook
