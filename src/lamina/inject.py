"""The one builder: `apply(model, design)` freezes the base, attaches the design group by group, marks
exactly the design's parameters trainable, and reports per group x method what it trained and stores.

Saved adapters are rebuilt through this same function, so there is no second code path that could
disagree with training. What is built and counted lives in `lamina.build`; this module attaches it and
keeps the per-model state (which adapters exist, which is active).
"""

from __future__ import annotations

import torch
from torch import nn

from lamina.arch import count_params, head_params, hidden_size, map_model
from lamina.budget import resolve
from lamina.build import AdapterSet, Report, Row, build_adapters, check, dry_rows, group_layers, report_rows
from lamina.design import Design, DesignError
from lamina.methods import METHODS
from lamina.methods.base import BuildContext, Gate, Runtime
from lamina.methods.head import attach_heads, build_heads
from lamina.methods.prompt import attach_prompt

CONTAINER = "lamina_adapters"
_RUNTIME, _FULL = "_lamina", "_lamina_full"  # plain attributes on the model, read only through this module


def runtime_of(model: nn.Module) -> Runtime:
    """The per-model runtime; created once, with the model-level hook that counts forwards and
    remembers the attention mask (for masked-mean gates)."""
    runtime = model.__dict__.get(_RUNTIME)
    if runtime is None:
        runtime = Runtime()
        model.__dict__[_RUNTIME] = runtime

        def entry_hook(_module, args, kwargs):
            runtime.enter(kwargs.get("attention_mask"))

        model.register_forward_pre_hook(entry_hook, with_kwargs=True)
        encoder = model.get_encoder() if getattr(getattr(model, "config", None), "is_encoder_decoder", False) else None
        if isinstance(encoder, nn.Module) and encoder is not model:

            def encoder_hook(_module, args, kwargs):  # generate() runs the encoder by itself, once
                runtime.mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)

            encoder.register_forward_pre_hook(encoder_hook, with_kwargs=True)
    return runtime


def active_adapter(model: nn.Module) -> str | None:
    """The name of the active adapter (None: none active, or full fine-tuning)."""
    runtime = model.__dict__.get(_RUNTIME)
    active = [n for n in (runtime.active if runtime else []) if n in _container(model)]
    return active[0] if active else None


def full_design(model: nn.Module) -> Design | None:
    """The design of a model under full fine-tuning (every parameter trains), else None."""
    return model.__dict__.get(_FULL)


def clear_full(model: nn.Module) -> None:
    model.__dict__.pop(_FULL, None)


def attach_order(strategies) -> list:
    """Strategies in the order their hooks must run (the methods' `Stage` rule; stable otherwise)."""
    return sorted(strategies, key=lambda s: METHODS[s.method].stage)


def apply(model: nn.Module, design, *, name: str = "default", dry_run: bool = False) -> Report:
    """Inject `design` (a Design, dict, file path or preset string like 'spafit:n1=4,n2=8') into `model`
    under `name`, make it the active adapter, and return what it trains. `dry_run` changes nothing."""
    mmap = map_model(model)
    design, budget = resolve(design, model, mmap)
    check(design, mmap)
    base_params = count_params(model) - sum(p.numel() for p in _container(model).parameters())
    base_head = head_params(model, mmap)
    if design.full:
        if not dry_run:
            for p in model.parameters():
                p.requires_grad_(True)
            model.__dict__[_FULL] = design  # so lamina.save knows to write the whole state dict
        rows = [Row("-", f"0-{mmap.num_layers - 1}", "full", base_params, base_params)]
        return Report(design, rows, base_params, base_head, name, budget)
    existing = _container(model)
    if name in existing:
        raise DesignError(f"an adapter named '{name}' is already on this model")
    planned = Report(design, dry_rows(design, model, mmap), base_params, base_head, name, budget)
    if dry_run:
        return planned
    check_size(planned.stored, base_params)
    ctx = BuildContext(mmap, hidden_size(model), runtime_of(model), name, model)
    with torch.device(next(model.parameters()).device):
        adapters = build_adapters(design, ctx)
    adapters.to(dtype=next(model.parameters()).dtype)
    report = Report(design, report_rows(adapters, design, mmap, base_head), base_params, base_head, name, budget)
    if design.train_head:
        adapters.heads = build_heads(ctx)
    if CONTAINER not in model._modules:
        model.add_module(CONTAINER, nn.ModuleDict())
    model._modules[CONTAINER][name] = adapters
    adapters.context = ctx
    for g, group in enumerate(design.groups):
        layers = group_layers(group, mmap)
        for s in attach_order(group.strategies):
            METHODS[s.method].attach(adapters.groups[str(g)][s.method], s, layers, ctx)
    if adapters.prompt is not None:
        attach_prompt(adapters.prompt, ctx)
    if design.train_head:
        attach_heads(adapters.heads, ctx)
    set_active(model, name)
    return report


MAX_SIZE_RATIO, MIN_SIZE_LIMIT = 10, 50_000_000  # a design may store at most 10x the base (or 50M values)


def check_size(stored: int, base_params: int) -> None:
    """A design many times larger than the model it adapts is a typo (adapter:bottleneck=10000000 asked a tiny
    BERT for 28 GB), not parameter-efficient tuning: refused before anything is allocated."""
    limit = max(MAX_SIZE_RATIO * base_params, MIN_SIZE_LIMIT)
    if stored > limit:
        raise DesignError(f"this design stores {stored:,} parameters, more than {MAX_SIZE_RATIO}x the base model's "
                          f"{base_params:,}; check its sizes (r, bottleneck, length, mlp)")


def _container(model: nn.Module) -> nn.ModuleDict:
    return model._modules.get(CONTAINER) or nn.ModuleDict()


def adapters_of(model: nn.Module) -> dict[str, AdapterSet]:
    return dict(_container(model).items())


def set_active(model: nn.Module, name: str | None) -> None:
    """Make `name` the one active (and trainable) adapter; None disables all: the base model is back."""
    container = _container(model)
    if name is not None and name not in container:
        raise DesignError(f"no adapter named '{name}' (loaded: {', '.join(container) or 'none'})")
    for p in model.parameters():
        p.requires_grad_(False)
    runtime = runtime_of(model)
    runtime.active = [] if name is None else [name]
    if name is not None:
        for p in container[name].parameters():
            p.requires_grad_(True)


def delete_adapter(model: nn.Module, name: str) -> None:
    container = _container(model)
    if name not in container:
        raise DesignError(f"no adapter named '{name}'")
    runtime = runtime_of(model)
    for handle in runtime.handles.pop(name, []):
        handle.remove()
    del container[name]
    runtime.active = [n for n in runtime.active if n != name]
    if not len(container) and CONTAINER in model._modules:
        del model._modules[CONTAINER]  # the last one gone: the model is the plain base model again


def trainable_names(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


def gate_values(model: nn.Module, name: str | None = None) -> dict[int, dict[str, float]]:
    """Mean UniPELT gate value per layer and submodule (adapter/prefix/lora), from the forwards run
    inside `collect_gates(model)` or, failing that, from the last forward."""
    container = _container(model)
    name = name or (runtime_of(model).active or list(container))[0]
    sums: dict[tuple[int, str], list[float]] = {}
    for _, _, s, method, module in container[name].parts():
        for layer, gate in method.gates(module):
            if gate.value() is not None:
                sums.setdefault((layer, s.method), []).append(gate.value())
    out: dict[int, dict[str, float]] = {}
    for (layer, method), values in sorted(sums.items()):
        out.setdefault(layer, {})[method] = sum(values) / len(values)
    return out


class collect_gates:
    """`with collect_gates(model): run eval` -> gate_values(model) averages over those forwards."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        runtime = runtime_of(self.model)
        for m in self.model.modules():
            if isinstance(m, Gate):
                m.reset()
        runtime.collect_gates = True
        return self

    def __exit__(self, *exc):
        runtime_of(self.model).collect_gates = False
        return False
