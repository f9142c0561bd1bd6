"""The one builder: `apply(model, design)` freezes the base, attaches the design group by group, marks
exactly the design's parameters trainable, and reports per group x method what it trained and stores.

Saved adapters are rebuilt through this same function, so there is no second code path that could
disagree with training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import torch
from torch import nn

from lamina.arch import ModelMap, count_params, head_params, hidden_size, map_model
from lamina.design import Design, DesignError, Group, Prefix, validate_targets
from lamina.methods import METHODS
from lamina.methods.base import BuildContext, Runtime
from lamina.methods.head import attach_heads, build_heads
from lamina.methods.prompt import SoftPrompt, attach_prompt, prompt_module
from lamina.util import human

CONTAINER = "lamina_adapters"


class AdapterSet(nn.Module):
    """Everything one named adapter trains: groups[g][method], the soft prompt, the head copies."""

    def __init__(self, design: Design):
        super().__init__()
        self.groups = nn.ModuleDict()
        self.prompt: SoftPrompt | None = None
        self.heads = nn.ModuleDict()
        self.design = design


@dataclass
class Row:
    group: str
    layers: str
    method: str
    trainable: int
    stored: int


@dataclass
class Report:
    """What a design trains on a model. `stored` counts what a save keeps (prefix MLPs collapsed)."""

    design: Design
    rows: list[Row]
    base_params: int
    base_head_params: int
    name: str = "default"
    budget: dict | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def trainable(self) -> int:
        return sum(r.trainable for r in self.rows)

    @property
    def stored(self) -> int:
        return sum(r.stored for r in self.rows)

    @property
    def head_trainable(self) -> int:
        return sum(r.trainable for r in self.rows if r.method == "head")

    def percent(self, with_head: bool = True) -> float:
        if self.design.full:
            return 100.0
        if with_head:
            return 100.0 * self.trainable / self.base_params
        base = self.base_params - self.base_head_params
        return 100.0 * (self.trainable - self.head_trainable) / max(base, 1)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "design": self.design.to_dict(),
            "rows": [r.__dict__ for r in self.rows],
            "trainable": self.trainable,
            "stored": self.stored,
            "base_params": self.base_params,
            "base_head_params": self.base_head_params,
            "trainable_percent": self.percent(True),
            "trainable_percent_without_head": self.percent(False),
            "budget": self.budget,
        }

    def table(self) -> str:
        lines = [f"{'group':<6} {'layers':<14} {'method':<10} {'trainable':>12} {'stored':>12}"]
        for r in self.rows:
            lines.append(f"{r.group:<6} {r.layers:<14} {r.method:<10} {r.trainable:>12,} {r.stored:>12,}")
        lines.append(f"{'total':<32} {self.trainable:>12,} {self.stored:>12,}")
        lines.append(
            f"base model {self.base_params:,} params ({human(self.base_params)}); trainable "
            f"{self.percent(True):.4f}% with head, {self.percent(False):.4f}% without head"
        )
        if self.budget:
            b = self.budget
            lines.append(f"budget: target {b['target']:,}, achieved {b['achieved']:,} ({b['error_percent']:+.2f}%), allocation {b['allocation']}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def runtime_of(model: nn.Module) -> Runtime:
    """The per-model runtime; created once, with the model-level hook that counts forwards and
    remembers the attention mask (for masked-mean gates)."""
    runtime = model.__dict__.get("_lamina")
    if runtime is None:
        runtime = Runtime()
        model.__dict__["_lamina"] = runtime

        def entry_hook(_module, args, kwargs):
            runtime.step += 1
            runtime.mask = kwargs.get("attention_mask")

        model.register_forward_pre_hook(entry_hook, with_kwargs=True)
    return runtime


def group_layers(group: Group, mmap: ModelMap):
    return [mmap.layers[mmap.global_index(group.stack, i)] for i in group.layers]


def _describe(group: Group) -> str:
    return f"{group.stack} {group.first}-{group.last}" if group.stack else f"{group.first}-{group.last}"


def _check(design: Design, mmap: ModelMap) -> None:
    design.check_depth(mmap.num_layers, mmap.stacks if any(g.stack for g in design.groups) else None)
    validate_targets(design, mmap.known_targets())
    seen: dict[int, int] = {}
    for i, g in enumerate(design.groups):
        for layer in group_layers(g, mmap):
            if layer.index in seen:
                raise DesignError(f"groups[{i}] and groups[{seen[layer.index]}] overlap at layer {layer.index}")
            seen[layer.index] = i
        for s in g.strategies:
            if s.method in SIZE_OF and SIZE_OF[s.method](s) is None:
                raise DesignError(f"groups[{i}]: {s.method} has no size; give one or a design budget")


# Hooks on one module run in registration order. Deltas that are part of a projection (BitFit, LN,
# LoRA) attach before inserts that read its output (adapters), so an adapter sees the same input
# whether those deltas run as hooks or are merged into the weights (merge == unmerged model).
ATTACH_ORDER = {"bitfit": 0, "ln": 0, "lora": 1, "adapter": 2, "prefix": 2}

SIZE_OF = {
    "lora": lambda s: s.r,
    "adapter": lambda s: s.bottleneck or s.reduction_factor,
    "prefix": lambda s: s.length,
}


def _build(design: Design, ctx: BuildContext) -> AdapterSet:
    adapters = AdapterSet(design)
    for g, group in enumerate(design.groups):
        layers = group_layers(group, ctx.mmap)
        adapters.groups[str(g)] = nn.ModuleDict({s.method: METHODS[s.method].build(s, layers, ctx) for s in group.strategies})
    if design.prompt is not None:
        embed = prompt_module(ctx).get_input_embeddings() if hasattr(prompt_module(ctx), "get_input_embeddings") else prompt_module(ctx).embed_tokens
        adapters.prompt = SoftPrompt(design.prompt, embed)
    return adapters


def _rows(adapters: AdapterSet, design: Design, mmap: ModelMap, head_count: int) -> list[Row]:
    rows = []
    for g, group in enumerate(design.groups):
        for s in group.strategies:
            module = adapters.groups[str(g)][s.method]
            trained = sum(p.numel() for p in module.parameters())
            stored = trained
            if isinstance(s, Prefix) and s.mlp:
                layers = len(group_layers(group, mmap))
                gates = sum(p.numel() for p in module.gates.parameters()) if module.gates is not None else 0
                stored = layers * 2 * s.length * module.kv_dim + gates
            rows.append(Row(str(g), _describe(group), s.method, trained, stored))
    if adapters.prompt is not None:
        n = adapters.prompt.embedding.numel()
        rows.append(Row("-", "input", "prompt", n, n))
    if design.train_head and head_count:
        rows.append(Row("-", "head", "head", head_count, head_count))
    return rows


def apply(model: nn.Module, design, *, name: str = "default", dry_run: bool = False) -> Report:
    """Inject `design` (a Design, dict, file path or preset string like 'spafit:n1=4,n2=8') into `model`
    under `name`, make it the active adapter, and return what it trains. `dry_run` changes nothing."""
    from lamina.budget import resolve

    mmap = map_model(model)
    design, budget = resolve(design, model, mmap)
    _check(design, mmap)
    base_params = count_params(model) - sum(p.numel() for p in _container(model).parameters())
    base_head = head_params(model, mmap)
    if design.full:
        if not dry_run:
            for p in model.parameters():
                p.requires_grad_(True)
            model.__dict__["_lamina_full"] = design  # so lamina.save knows to write the whole state dict
        rows = [Row("-", f"0-{mmap.num_layers - 1}", "full", base_params, base_params)]
        return Report(design, rows, base_params, base_head, name, budget)
    existing = _container(model)
    if name in existing:
        raise DesignError(f"an adapter named '{name}' is already on this model")
    if dry_run:
        return Report(design, dry_rows(design, model, mmap), base_params, base_head, name, budget)
    ctx = BuildContext(mmap, hidden_size(model), runtime_of(model), name, model)
    with torch.device(next(model.parameters()).device):
        adapters = _build(design, ctx)
    adapters.to(dtype=next(model.parameters()).dtype)
    report = Report(design, _rows(adapters, design, mmap, base_head), base_params, base_head, name, budget)
    if design.train_head:
        adapters.heads = build_heads(ctx)
    if CONTAINER not in model._modules:
        model.add_module(CONTAINER, nn.ModuleDict())
    model._modules[CONTAINER][name] = adapters
    adapters.__dict__["ctx"] = ctx
    for g, group in enumerate(design.groups):
        layers = group_layers(group, mmap)
        for s in sorted(group.strategies, key=lambda s: ATTACH_ORDER[s.method]):
            METHODS[s.method].attach(adapters.groups[str(g)][s.method], s, layers, ctx)
    if adapters.prompt is not None:
        attach_prompt(adapters.prompt, ctx)
    if design.train_head:
        attach_heads(adapters.heads, ctx)
    set_active(model, name)
    return report


def dry_rows(design: Design, model: nn.Module, mmap: ModelMap) -> list[Row]:
    """Count a concrete design on the meta device (no memory, model untouched)."""
    ctx = BuildContext(mmap, hidden_size(model), Runtime(), "dry-run", model)
    with torch.device("meta"):
        adapters = _build(design, ctx)
    return _rows(adapters, design, mmap, head_params(model, mmap))


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
    from lamina.methods.base import Gate

    container = _container(model)
    name = name or (runtime_of(model).active or list(container))[0]
    sums: dict[tuple[int, str], list[float]] = {}
    for qualified, module in container[name].named_modules():
        if isinstance(module, Gate) and module.value() is not None:
            parts = qualified.split(".")  # groups.<g>.<method>.<layer>... / groups.<g>.prefix.gates.<layer>
            method = parts[2]
            layer = int(parts[4] if method == "prefix" else parts[3])
            sums.setdefault((layer, method), []).append(module.value())
    out: dict[int, dict[str, float]] = {}
    for (layer, method), values in sorted(sums.items()):
        out.setdefault(layer, {})[method] = sum(values) / len(values)
    return out


class collect_gates:
    """`with collect_gates(model): run eval` -> gate_values(model) averages over those forwards."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        from lamina.methods.base import Gate

        runtime = runtime_of(self.model)
        for m in self.model.modules():
            if isinstance(m, Gate):
                m.reset()
        runtime.collect_gates = True
        return self

    def __exit__(self, *exc):
        runtime_of(self.model).collect_gates = False
        return False
