"""Prefix tuning: `length` learned keys/values per layer that every query may attend to.

It works through transformers' attention-function interface, not `past_key_values`: each prefixed
attention module gets a private config copy naming the `lamina_prefix` implementation, which
prepends the prefix to the projected (and, for rotary models, already rotated) keys/values, widens
the mask so real padding stays masked and prefix positions are always visible, pads T5's position
bias, then calls the model's own implementation (sdpa or eager). With `mlp`, the keys/values come
from a re-parameterisation MLP while training (Li & Liang; UniPELT); `collapse()` keeps only them.
"""

from __future__ import annotations

import copy
import sys

from typing import Iterator, Literal

import torch
from pydantic import StrictBool, StrictInt, field_validator
from torch import nn

from lamina.arch import Layer
from lamina.errors import DesignError
from lamina.methods.base import BuildContext, Gate, Method, Stage, Strategy, first_tensor, layer_dtype


class Prefix(Strategy):
    """Learned per-layer keys/values of `length` positions that every query can attend to.
    `mlp` = width of the re-parameterisation MLP used while training (dropped at save)."""

    method: Literal["prefix"] = "prefix"
    length: StrictInt | None = 10
    mlp: StrictInt | None = None
    gated: StrictBool = False

    @field_validator("length", "mlp")
    @classmethod
    def _positive(cls, value):
        if value is not None and value <= 0:
            raise ValueError("must be > 0")
        return value

IMPL = "lamina_prefix"


class PrefixGroup(nn.Module):
    """Keys/values for the consecutive layers of one group."""

    def __init__(self, num_layers: int, length: int, kv_dim: int, hidden: int, mlp: int | None, gated: bool, layer_ids):
        super().__init__()
        self.num_layers, self.length, self.kv_dim = num_layers, length, kv_dim
        if mlp:
            self.embedding = nn.Parameter(torch.randn(length, hidden))
            self.mlp = nn.Sequential(nn.Linear(hidden, mlp), nn.Tanh(), nn.Linear(mlp, num_layers * 2 * kv_dim))
        else:
            self.kv = nn.Parameter(torch.randn(num_layers, 2, length, kv_dim) * 0.02)
        self.gates = nn.ModuleDict({str(i): Gate(hidden) for i in layer_ids}) if gated else None
        self._cache: tuple[int, torch.Tensor] | None = None

    def all_kv(self, step: int) -> torch.Tensor:
        """[layers, 2, length, kv_dim]. With an MLP: computed once per forward pass while gradients are
        on (at the model's entry, outside any gradient-checkpointed block, so a block's recomputation
        reuses the same tensor and saves the same tensors), and once per change of the MLP's weights
        while they are off (inference reuses it across forwards)."""
        if not hasattr(self, "mlp"):
            return self.kv
        if torch.is_grad_enabled():
            key = ("step", step)
        else:
            key = ("weights", self.embedding._version, tuple(p._version for p in self.mlp.parameters()),
                   self.embedding.data_ptr(), self.embedding.device, self.embedding.dtype)
        if self._cache is None or self._cache[0] != key:
            out = self.mlp(self.embedding)  # [length, layers*2*kv]
            kv = out.view(self.length, self.num_layers, 2, self.kv_dim).permute(1, 2, 0, 3)
            self._cache = (key, kv)
        return self._cache[1]

    @torch.no_grad()
    def collapse(self) -> None:
        """Drop the MLP, keep what it produces (what is stored and counted as 'stored')."""
        if hasattr(self, "mlp"):
            kv = self.all_kv(-1).detach().clone()
            del self.mlp, self.embedding
            self.kv = nn.Parameter(kv)
            self._cache = None


class PrefixMethod(Method):
    name, schema, stage = "prefix", Prefix, Stage.INSERT
    title = "prefix tuning"
    size_field, letter = "length", "P"
    in_default_space = True

    def check(self, strategy: Prefix, mmap, where: str) -> None:
        """The prefix may not be longer than the sequences the model's positions can hold (a typo such as
        length=100000 would otherwise allocate layers x 2 x 100000 x width before anything fails)."""
        self.check_bound(strategy.length, mmap.positions, f"{where}.length",
                         f"this model's {mmap.positions} positions (max_position_embeddings)")

    def stored_strategy(self, strategy: Prefix) -> Prefix:
        return strategy.model_copy(update={"mlp": None}) if strategy.mlp else strategy

    def stored_tensors(self, module: "PrefixGroup") -> dict[str, torch.Tensor]:
        """The MLP collapsed to the keys/values it produces (computed without touching the live module)."""
        tensors = super().stored_tensors(module)
        if not hasattr(module, "mlp"):
            return tensors
        tensors = {k: v for k, v in tensors.items() if k != "embedding" and not k.startswith("mlp.")}
        cache = module._cache
        try:
            with torch.no_grad():
                tensors["kv"] = module.all_kv(-1).detach().clone().contiguous()
        finally:
            module._cache = cache
        return tensors

    def stored_count(self, module: "PrefixGroup", strategy: Prefix) -> int:
        gates = sum(p.numel() for p in module.gates.parameters()) if module.gates is not None else 0
        return module.num_layers * 2 * module.length * module.kv_dim + gates

    def scaled_tensors(self, module: "PrefixGroup", strategy: Prefix) -> dict:
        """The keys and values (or the last layer of the MLP that makes them), scaled together as
        UniPELT's prefix gate does: at 0 the prefix adds nothing, though its zero keys still take a share
        of the attention."""
        return {"mlp.2.weight": 0.0, "mlp.2.bias": 0.0} if hasattr(module, "mlp") else {"kv": 0.0}

    def gates(self, module: "PrefixGroup") -> Iterator[tuple[int, Gate]]:
        if module.gates is not None:
            for key, gate in module.gates.items():
                yield int(key), gate

    def build(self, strategy: Prefix, layers: list[Layer], ctx: BuildContext) -> nn.Module:
        if not ctx.mmap.family.prefix_supported:
            raise DesignError(f"prefix tuning is not available for {ctx.mmap.family.name}: its attention does not use the attention interface")
        kv_dim = ctx.out_width(layers[0], ctx.mmap.sites(layers[0], "k")[0])
        group = PrefixGroup(len(layers), strategy.length, kv_dim, ctx.hidden, strategy.mlp, strategy.gated, [l.index for l in layers])
        return group.to(dtype=layer_dtype(layers[0]))

    def attach(self, module: PrefixGroup, strategy: Prefix, layers: list[Layer], ctx: BuildContext) -> None:
        register_attention()
        if hasattr(module, "mlp"):
            ctx.before_forward(lambda: module.all_kv(ctx.runtime.step))
        for pos, layer in enumerate(layers):
            attention = layer.block.get_submodule(ctx.mmap.family.attention[0])
            gate = module.gates[str(layer.index)] if module.gates is not None else None
            if gate is not None:
                gate.runtime = ctx.runtime
                causal = layer.stack == "decoder"
                if not causal:  # reads the block input, which a gated LoRA on q/v reads too (post-LN blocks)
                    ctx.share_gate(layer, gate)

                def block_pre_hook(_block, args, kwargs, gate=gate, causal=causal, local=layer.local_index):
                    if ctx.runtime.is_active(ctx.name):
                        x = first_tensor(args, kwargs)
                        if causal:  # decoder stacks: the gate reads the sequence's first token, and a cached
                            if _continuing(args, kwargs, local) and "_value" in gate.__dict__:
                                return  # generation step keeps the value its first step computed
                            x = _first_token(x, ctx.runtime.mask, ctx.model)
                        gate.__dict__["_value"] = gate(x)

                ctx.hook(layer.block, block_pre_hook, pre=True, with_kwargs=True)
            install(attention, ctx, module, pos, gate)

    def merge(self, module, strategy, layers, ctx, undo) -> str | None:
        return "prefix tuning (extra attention positions)"


def _continuing(args, kwargs, layer: int) -> bool:
    """Whether this forward extends a sequence held in a key/value cache (a generation step)."""
    from transformers.cache_utils import Cache

    cache = kwargs.get("cache", kwargs.get("past_key_values"))
    if cache is None:
        cache = next((a for a in args if isinstance(a, Cache)), None)
    return isinstance(cache, Cache) and cache.get_seq_length(layer) > 0


def _first_token(x: torch.Tensor, mask, model) -> torch.Tensor:
    """[B, 1, H]: each row's first real (unpadded) position; position 0 in a decoder fed by an encoder."""
    if mask is None or mask.dim() != 2 or tuple(mask.shape) != tuple(x.shape[:2]) or model.config.is_encoder_decoder:
        return x[:, :1]
    first = mask.to(torch.long).argmax(dim=1)  # first 1 of each row (left padding)
    return x[torch.arange(x.shape[0], device=x.device), first.to(x.device)].unsqueeze(1)


class _Uninstall:
    """A hook-handle look-alike, so deleting an adapter removes its prefixes like its hooks."""

    def __init__(self, attention: nn.Module, name: str):
        self.attention, self.name = attention, name

    def remove(self) -> None:
        entries = self.attention.__dict__.get("_lamina_prefixes", {})
        entries.pop(self.name, None)
        if not entries and "_lamina_config" in self.attention.__dict__:
            self.attention.config = self.attention.__dict__.pop("_lamina_config")
            self.attention.__dict__.pop("_lamina_prefixes", None)


def install(attention: nn.Module, ctx: BuildContext, group: PrefixGroup, pos: int, gate: Gate | None) -> None:
    state = attention.__dict__
    if "_lamina_config" not in state:
        state["_lamina_config"] = attention.config
        state["_lamina_base_impl"] = attention.config._attn_implementation or "eager"
        private = copy.copy(attention.config)
        private.__dict__["_attn_implementation_internal"] = IMPL  # this module only; sub-configs untouched
        attention.config = private
        state["_lamina_prefixes"] = {}
        state["_lamina_runtime"] = ctx.runtime
    state["_lamina_prefixes"][ctx.name] = (group, pos, gate)
    ctx.runtime.handles.setdefault(ctx.name, []).append(_Uninstall(attention, ctx.name))


def _base_function(module: nn.Module, impl: str):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if impl == "eager":
        return sys.modules[type(module).__module__].eager_attention_forward
    return ALL_ATTENTION_FUNCTIONS[impl]


def prefix_attention(module, query, key, value, attention_mask, **kwargs):
    state = module.__dict__
    impl, runtime = state["_lamina_base_impl"], state["_lamina_runtime"]
    keys, values = [], []
    batch, kv_heads, _, head_dim = key.shape
    for name in runtime.active:
        entry = state["_lamina_prefixes"].get(name)
        if entry is None:
            continue
        group, pos, gate = entry
        kv = group.all_kv(runtime.step)[pos].to(key.dtype)  # [2, length, kv_dim]
        kv = kv.view(2, group.length, kv_heads, head_dim).permute(0, 2, 1, 3).unsqueeze(1)
        kv = kv.expand(2, batch, kv_heads, group.length, head_dim)
        if gate is not None:
            kv = kv * gate.__dict__["_value"].reshape(1, batch, 1, 1, 1).to(kv.dtype)
        keys.append(kv[0])
        values.append(kv[1])
    if keys:
        extra = sum(k.shape[2] for k in keys)
        key, value = torch.cat(keys + [key], dim=2), torch.cat(values + [value], dim=2)
        attention_mask = _widen_mask(attention_mask, extra, query, key, module, impl, kwargs)
        if kwargs.get("position_bias") is not None:
            kwargs["position_bias"] = nn.functional.pad(kwargs["position_bias"], (extra, 0))
    return _base_function(module, impl)(module, query, key, value, attention_mask, **kwargs)


def _widen_mask(mask, extra: int, query, key, module, impl: str, kwargs):
    """Prefix columns are visible to every query; everything else keeps its mask."""
    if mask is None:
        q_len, k_len = query.shape[-2], key.shape[-2] - extra
        flag = kwargs.get("is_causal")
        causal = impl != "eager" and q_len > 1 and (flag if flag is not None else getattr(module, "is_causal", True))
        if not causal:
            return None
        real = torch.ones(q_len, k_len, dtype=torch.bool, device=query.device).tril(diagonal=k_len - q_len)
        return torch.cat([torch.ones(q_len, extra, dtype=torch.bool, device=query.device), real], -1)[None, None]
    if mask.dtype == torch.bool:
        pad = torch.ones(*mask.shape[:-1], extra, dtype=torch.bool, device=mask.device)
    else:
        pad = torch.zeros(*mask.shape[:-1], extra, dtype=mask.dtype, device=mask.device)
    return torch.cat([pad, mask], dim=-1)


def register_attention() -> None:
    """Make `lamina_prefix` a transformers attention implementation (once; transformers is imported
    here, not at lamina's import, so designs and the CLI stay light)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

    if IMPL not in ALL_ATTENTION_FUNCTIONS:
        AttentionInterface.register(IMPL, prefix_attention)
