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
from lamina.errors import DesignError, LaminaError
from lamina.methods.peft_codec import PeftCodec, PeftModule, compact_targets, lamina_targets, patterns, peft_matchers, tensor
from lamina.methods.base import (BuildContext, Gate, Method, Real, Rider, Stage, Strategy, add_product, add_to_slice, fold, fold_scale,
                                 layer_dtype, unique_names)


class LoRA(Strategy):
    """Low-rank update W + s·B·A on chosen projections; `gated` replaces s by a UniPELT gate."""

    method: Literal["lora"] = "lora"
    r: StrictInt | None = Field(8, description="rank; None = sized by the budget solver")
    alpha: Real | None = Field(None, gt=0, description="scaling numerator (> 0); default 2·r")
    dropout: Real = Field(0.0, ge=0.0, lt=1.0)
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
    def _targets(cls, value):
        return unique_names(value, "projection")

    @model_validator(mode="after")
    def _combinations(self):
        if self.gated and self.dora:
            raise ValueError("dora and gated cannot be combined (a gate replaces the scale DoRA normalises)")
        return self

    @property
    def scaling(self) -> float:
        alpha = self.alpha if self.alpha is not None else 2.0 * self.r
        return alpha / math.sqrt(self.r) if self.rslora else alpha / self.r


class LoRADelta(Rider, nn.Module):
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

    def rider_rows(self):
        return self.A, None


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
    name, schema, stage, title = "lora", LoRA, Stage.WEIGHT, "LoRA"
    size_field, letter = "r", "L"
    in_default_space = True
    search_options = {"targets": ["q", "v"]}
    peft = None  # set below: LoRACodec

    def check(self, strategy: LoRA, mmap, where: str) -> None:
        """Targets must exist, and the rank must be one the projections can hold (a rank above both of a
        projection's dimensions adds parameters and nothing else — and a typo such as r=80000 would
        allocate gigabytes before anything else fails)."""
        super().check(strategy, mmap, where)
        if strategy.r is None:
            return
        for target in strategy.targets:
            for site in mmap.sites(mmap.layers[0], target):
                fan_in, fan_out = in_out(mmap.layers[0].block.get_submodule(site.path))
                limit = max(fan_in, fan_out // site.parts)
                if strategy.r > limit:
                    raise DesignError(f"{where}.r: {strategy.r} is larger than the '{target}' projection ({fan_in} -> "
                                      f"{fan_out // site.parts}); use r <= {limit}")

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
                gate.causal = layer.stack == "decoder"
                if set(strategy.targets) & {"q", "k", "v"}:  # reads the attention input, as a gated prefix does
                    ctx.share_gate(layer, gate)
            for target in strategy.targets:
                for site in ctx.mmap.sites(layer, target):
                    proj = ctx.projection(layer, site)
                    delta = modules[site.key]
                    if gate is not None and site.parts == 1 and not strategy.dora and strategy.dropout == 0:
                        gate.carry(delta)  # x·Aᵀ from the gate's product (it reads the same x)
                    ctx.hook(proj, _hook(delta, gate, proj, site, strategy, ctx, module))

    def scaled_tensors(self, module: nn.Module, strategy: LoRA) -> dict:
        """B scales s·B·A·x exactly; DoRA's magnitude also moves from its built value (‖W‖: no change)."""
        out = {}
        for name, delta in module.named_modules():
            if isinstance(delta, LoRADelta):
                out[f"{name}.B"] = 0.0
                if hasattr(delta, "magnitude"):
                    out[f"{name}.magnitude"] = delta.magnitude.detach().clone()
        return out

    def merge(self, module: nn.Module, strategy: LoRA, layers: list[Layer], ctx: BuildContext, undo: bool) -> str | None:
        if strategy.gated:
            return "gated LoRA (its scale depends on the input)"
        for layer in layers:
            for target in strategy.targets:
                for site in ctx.mmap.sites(layer, target):
                    view, conv1d = weight_view(ctx.projection(layer, site), site)
                    delta = module[str(layer.index)][site.key]
                    key = f"{layer.index}.{site.key}"
                    if conv1d:  # [in, out] += s·(B·A)ᵀ = s·Aᵀ·Bᵀ, in place
                        def update(v, sign, d=delta):
                            v.addmm_(d.A.t().to(v.dtype), d.B.t().to(v.dtype), alpha=sign * strategy.scaling)
                    else:  # [out, in] += s·B·A, in place
                        def update(v, sign, d=delta):
                            v.addmm_(d.B.to(v.dtype), d.A.to(v.dtype), alpha=sign * strategy.scaling)
                    if strategy.dora and undo:  # reverse order: the magnitude rescaling first
                        fold_scale(module, key + ".dora", view, None, True)
                    fold(module, key, view, update, undo, exact=ctx.exact_merge)
                    if strategy.dora and not undo:
                        # W' = (m / ‖W + sBA‖) ⊙ (W + sBA): the view now holds W + sBA
                        weight = view.t() if conv1d else view
                        factor = (delta.magnitude / weight.norm(p=2, dim=1)).detach()
                        fold_scale(module, key + ".dora", view, factor.unsqueeze(0) if conv1d else factor.unsqueeze(1),
                                   False, exact=ctx.exact_merge)
        return None


def _hook(delta: LoRADelta, gate: Gate | None, proj: nn.Module, site, strategy: LoRA, ctx: BuildContext, owner: nn.Module):
    runtime, name, scaling = ctx.runtime, ctx.name, strategy.scaling
    fused = gate is not None and site.parts == 1  # plain LoRA keeps PEFT's order of operations (bit-equal logits)

    def forward_hook(_module, args, out):
        if owner.__dict__.get("merged", False) or not runtime.is_active(name):
            return out
        x = args[0]
        scale = gate(x) if gate is not None else scaling
        if fused:
            return add_low_rank(out, delta, x, scale)
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


def add_low_rank(out: torch.Tensor, delta: LoRADelta, x: torch.Tensor, scale) -> torch.Tensor:
    """out + s·B·A·x with the scale (a number, or a gate's [B, 1, 1] / [B, T, 1] values) applied to the
    rank-r activations and the addition done by the second product itself (one addmm: no full-width
    temporaries for the update, its scaling, or the sum)."""
    low = delta.recall(x)  # carried by the gate's product
    if low is None:
        low = delta.dropout(x) @ delta.A.t()  # [..., r]
    low = low * scale
    if out.dim() < 2 or out.shape[:-1] != low.shape[:-1] or out.dtype != low.dtype or torch.is_autocast_enabled(out.device.type):
        return out + low @ delta.B.t()
    return add_product(out, low, delta.B.t())


# --- PEFT format: peft_type LORA ---------------------------------------------------------------------
# Tensors: `<module>.lora_A.weight` [r, in], `.lora_B.weight` [out, r], `.lora_magnitude_vector` [out]
# (DoRA). PEFT scales by lora_alpha / r (lora_alpha / sqrt(r) with use_rslora), as lamina does.
UNSUPPORTED = {
    "lora_bias": "LoRA bias terms (lora_bias)", "layer_replication": "layer replication",
    "target_parameters": "LoRA on parameters (target_parameters)", "trainable_token_indices": "trainable token indices",
    "alora_invocation_tokens": "activated LoRA (alora)", "use_qalora": "QA-LoRA", "use_bdlora": "BD-LoRA",
}


# initialisations that subtract the starting adapter from the base weights (PiSSA, OLoRA, LoftQ, CorDA): the
# saved tensors are relative to that residual base, not to the base model
BASE_CHANGING_INITS = ("pissa", "olora", "loftq", "corda")


class LoRACodec(PeftCodec):
    peft_type, config_class = "LORA", "LoraConfig"

    def refuse(self, strategy: LoRA) -> str | None:
        return "gated LoRA (UniPELT gates)" if strategy.gated else None

    def export_layer(self, strategy: LoRA, layer, mmap, tensors, prefix):
        alpha = strategy.alpha if strategy.alpha is not None else 2.0 * strategy.r
        out = {}
        for target in strategy.targets:
            for site in mmap.sites(layer, target):
                if site.parts > 1:
                    leaf = site.path.rsplit(".", 1)[-1]
                    raise LaminaError(f"LoRA target '{target}' is slice {site.part + 1}/{site.parts} of the fused {leaf}; "
                                      f"PEFT adapts whole modules only (target '{leaf}' instead)")
                key = f"{prefix}{layer.index}.{site.key}."
                parts = {"lora_A.weight": tensors.pop(key + "A"), "lora_B.weight": tensors.pop(key + "B")}
                if strategy.dora:
                    parts["lora_magnitude_vector"] = tensors.pop(key + "magnitude")
                out[f"{layer.path}.{site.path}"] = PeftModule(layer, site.path, parts, (strategy.r, alpha))
        return out

    def export_config(self, modules, strategies, names, modules_to_save):
        config = {}
        for option, field_name in (("lora_dropout", "dropout"), ("use_rslora", "rslora"), ("use_dora", "dora")):
            values = {getattr(s, field_name) for s in strategies}
            if len(values) > 1:
                raise LaminaError(f"LoRA {field_name} differs between groups ({sorted(values)}); PEFT has one {option}")
            config[option] = values.pop()
        r, alpha, rank, alphas = patterns(modules)
        config.update(r=r, lora_alpha=alpha, rank_pattern=rank, alpha_pattern=alphas, bias="none", init_lora_weights=True)
        config.update(compact_targets(modules, names, modules_to_save))
        return config

    def check_config(self, cfg: dict, path) -> None:
        for key, what in UNSUPPORTED.items():
            if cfg.get(key):
                raise LaminaError(f"{path}: {what} has no lamina equivalent")
        if cfg.get("bias", "none") != "none":
            raise LaminaError(f"{path}: trained biases (bias='{cfg['bias']}') are not imported; lamina expresses them as BitFit")
        init = cfg.get("init_lora_weights")
        if isinstance(init, str) and init.lower().startswith(BASE_CHANGING_INITS):
            raise LaminaError(f"{path}: init_lora_weights '{init}' changed the base weights while training, so these "
                              "LoRA tensors only fit that changed base; convert the adapter to plain LoRA in PEFT "
                              "first (save_pretrained(..., path_initial_model_for_weight_conversion=...))")

    def read_module(self, config, path: str, tensors: dict) -> dict:
        get_key = peft_matchers()[1]
        r = config.rank_pattern.get(get_key(config.rank_pattern.keys(), path), config.r)
        alpha = config.alpha_pattern.get(get_key(config.alpha_pattern.keys(), path), config.lora_alpha)
        found = {"options": (r, alpha)}
        names = [("A", "lora_A.weight"), ("B", "lora_B.weight")] + ([("magnitude", "lora_magnitude_vector")] if config.use_dora else [])
        for name, suffix in names:
            found[name] = tensor(tensors, f"base_model.model.{path}.{suffix}", path, "adapter_model.safetensors")
        return found

    def layer_strategy(self, config, layer, mmap, found):
        sizes = {f["options"] for f in found.values()}
        if len(sizes) > 1:
            raise LaminaError(f"layer {layer.index}: PEFT gives its modules different ranks/alphas ({sorted(sizes)}); "
                              "lamina has one LoRA size per group")
        (r, alpha), = sizes
        strategy = LoRA(r=int(r), alpha=float(alpha), targets=lamina_targets(mmap, layer, set(found)),
                        dropout=float(config.lora_dropout or 0.0), rslora=bool(config.use_rslora), dora=bool(config.use_dora))
        state = {}
        for target in strategy.targets:
            for site in mmap.sites(layer, target):
                for name in ("A", "B", "magnitude"):
                    if name in found[site.path]:
                        state[f"{layer.index}.{site.key}.{name}"] = found[site.path][name]
        return strategy, state


LoRAMethod.peft = LoRACodec()
