"""IA³ (Liu et al. 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context
Learning"): learned vectors that rescale activations. On a projection target (k, v, any of q/k/v/o/
ffn_in/ffn_out or a module name) the projection's output is multiplied by l_out; the target `ffn` is the
FFN's inner activation, i.e. the input of the FFN's output projection is multiplied by l_ff. Vectors
start at one (the model is unchanged at init) and merge exactly: W·diag(l) for inputs, diag(l)·W (and
l·b) for outputs. On a bert-base config, k+v+ffn is 12 × (768 + 768 + 3072) = 55,296 parameters."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import field_validator
from torch import nn

from lamina.arch import Layer, in_out
from lamina.errors import DesignError, LaminaError
from lamina.methods.base import BuildContext, Method, Stage, Strategy, fold_scale, layer_dtype, unique_names
from lamina.methods.peft_codec import PeftCodec, PeftModule, lamina_targets, tensor

FFN = "ffn"  # the FFN's inner activation (= the input of ffn_out)


class IA3(Strategy):
    """Learned rescaling vectors on projection outputs, and on the FFN's inner activation (`ffn`)."""

    method: Literal["ia3"] = "ia3"
    targets: tuple[str, ...] = ("k", "v", FFN)

    @field_validator("targets")
    @classmethod
    def _targets(cls, value):
        return unique_names(value, "activation")


def scaled_sites(strategy: IA3, layer: Layer, ctx: BuildContext):
    """(site, scales_input) for every scaled place of one layer."""
    for target in strategy.targets:
        if target == FFN:
            yield from ((site, True) for site in ctx.mmap.sites(layer, "ffn_out"))
        else:
            yield from ((site, False) for site in ctx.mmap.sites(layer, target))


def _key(site, scales_input: bool) -> str:
    return f"{site.key}-in" if scales_input else site.key


class IA3Method(Method):
    name, schema, stage = "ia3", IA3, Stage.SCALE
    title = "IA³"
    letter = "I"

    def check(self, strategy: IA3, mmap, where: str) -> None:
        known = mmap.known_targets() | {FFN}
        for t in strategy.targets:
            if t not in known:
                raise DesignError(f"{where}.targets: unknown target '{t}' (this model has: {', '.join(sorted(known))})")

    def build(self, strategy: IA3, layers: list[Layer], ctx: BuildContext) -> nn.Module:
        per_layer = nn.ModuleDict()
        for layer in layers:
            vectors = nn.ParameterDict()
            for site, scales_input in scaled_sites(strategy, layer, ctx):
                width = in_out(ctx.projection(layer, site))[0] if scales_input else ctx.out_width(layer, site)
                vectors[_key(site, scales_input)] = nn.Parameter(torch.ones(width, dtype=layer_dtype(layer)))
            per_layer[str(layer.index)] = vectors
        return per_layer

    def attach(self, module: nn.Module, strategy: IA3, layers: list[Layer], ctx: BuildContext) -> None:
        for layer in layers:
            vectors = module[str(layer.index)]
            for site, scales_input in scaled_sites(strategy, layer, ctx):
                key = _key(site, scales_input)
                hook = _input_hook(vectors, key, module, ctx) if scales_input else _output_hook(vectors, key, site, module, ctx)
                ctx.hook(ctx.projection(layer, site), hook, pre=scales_input)

    def scaled_tensors(self, module: nn.Module, strategy: IA3) -> dict:
        """Every vector, about its neutral value one: l' = 1 + g·(l − 1)."""
        return {name: 1.0 for name, _ in module.named_parameters()}

    def merge(self, module: nn.Module, strategy: IA3, layers: list[Layer], ctx: BuildContext, undo: bool) -> str | None:
        for layer in layers:
            vectors = module[str(layer.index)]
            for site, scales_input in scaled_sites(strategy, layer, ctx):
                proj = ctx.projection(layer, site)
                vector = vectors[_key(site, scales_input)].detach()
                conv1d = not isinstance(proj, nn.Linear)  # GPT-2 Conv1D stores [in, out]
                weight = proj.weight.data
                key = f"{layer.index}.{_key(site, scales_input)}"
                if scales_input:  # W·diag(l): scale the input columns
                    fold_scale(module, key + ".w", weight, vector.unsqueeze(1) if conv1d else vector.unsqueeze(0),
                               undo, exact=ctx.exact_merge)
                    continue
                sl = site.out_slice(weight.shape[1] if conv1d else weight.shape[0])
                view = weight[:, sl] if conv1d else weight[sl, :]
                fold_scale(module, key + ".w", view, vector.unsqueeze(0) if conv1d else vector.unsqueeze(1), undo,
                           exact=ctx.exact_merge)
                if getattr(proj, "bias", None) is not None:
                    fold_scale(module, key + ".b", proj.bias.data[sl], vector, undo, exact=ctx.exact_merge)
        return None


def _output_hook(vectors: nn.ParameterDict, key: str, site, owner: nn.Module, ctx: BuildContext):
    runtime, name = ctx.runtime, ctx.name

    def forward_hook(_module, _args, out):
        if getattr(owner, "merged", False) or not runtime.is_active(name):
            return out
        vector = vectors[key]  # read at call time (a gating search may re-parameterise it)
        if site.parts == 1:
            return out * vector
        sl = site.out_slice(out.shape[-1])
        ones = torch.ones(out.shape[-1], dtype=vector.dtype, device=vector.device)
        return out * torch.cat([ones[: sl.start], vector, ones[sl.stop:]])

    return forward_hook


def _input_hook(vectors: nn.ParameterDict, key: str, owner: nn.Module, ctx: BuildContext):
    runtime, name = ctx.runtime, ctx.name

    def pre_hook(_module, args):
        if getattr(owner, "merged", False) or not runtime.is_active(name):
            return None
        return (args[0] * vectors[key], *args[1:])

    return pre_hook


# --- PEFT format: peft_type IA3 ----------------------------------------------------------------------
# Tensors: `<module>.ia3_l`, [out, 1] for a scaled output, [1, in] for a scaled input (a "feedforward
# module"). A lamina target that is a slice of a fused projection (GPT-2's k in c_attn) becomes the
# whole module's vector with ones on the other slices, which computes the same thing.
class IA3Codec(PeftCodec):
    peft_type, config_class = "IA3", "IA3Config"

    def export_layer(self, strategy: IA3, layer, mmap, tensors, prefix):
        out = {}
        for target in strategy.targets:
            scales_input = target == FFN
            for site in mmap.sites(layer, "ffn_out" if scales_input else target):
                vector = tensors.pop(f"{prefix}{layer.index}.{_key(site, scales_input)}")
                path = f"{layer.path}.{site.path}"
                if scales_input:
                    out[path] = PeftModule(layer, site.path, {"ia3_l": vector.reshape(1, -1)}, feedforward=True)
                    continue
                module = out.setdefault(path, PeftModule(layer, site.path))
                width = vector.shape[0] * site.parts
                full = module.tensors.get("ia3_l", torch.ones(width, 1, dtype=vector.dtype))
                full[site.out_slice(width), 0] = vector
                module.tensors["ia3_l"] = full
        return out

    def export_config(self, modules, strategies, names, modules_to_save):
        # Exact module names: PEFT requires feedforward_modules to be a subset of target_modules.
        return {
            "target_modules": sorted(modules), "feedforward_modules": sorted(p for p, m in modules.items() if m.feedforward),
            "layers_to_transform": None, "layers_pattern": None, "init_ia3_weights": True,
        }

    def read_module(self, config, path: str, tensors: dict) -> dict:
        from peft.tuners.ia3.model import IA3Model

        vector = tensor(tensors, f"base_model.model.{path}.ia3_l", path, "adapter_model.safetensors")
        return {"vector": vector.flatten(), "feedforward": IA3Model._check_target_module_feedforward(config, path)}

    def layer_strategy(self, config, layer, mmap, found):
        ffn_out = {s.path for s in mmap.sites(layer, "ffn_out")}
        inputs = {path for path, f in found.items() if f["feedforward"]}
        if inputs and inputs != ffn_out:
            wrong = sorted(inputs - ffn_out) or sorted(ffn_out - inputs)
            raise LaminaError(f"layer {layer.index}: IA3 scales the input of '{wrong[0]}'; lamina scales inputs only "
                              "of the FFN's output projection, all of it (target 'ffn')")
        outputs = lamina_targets(mmap, layer, {p for p in found if p not in inputs})
        strategy = IA3(targets=outputs + ((FFN,) if inputs else ()))
        state = {}
        for site, scales_input in scaled_sites(strategy, layer, _MapOnly(mmap)):
            state[f"{layer.index}.{_key(site, scales_input)}"] = found[site.path]["vector"]
        return strategy, state


class _MapOnly:
    """What `scaled_sites` reads of a build context: the model map."""

    def __init__(self, mmap):
        self.mmap = mmap


IA3Method.peft = IA3Codec()
