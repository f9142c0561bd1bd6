"""What every method shares: the per-model runtime state, hook bookkeeping, and the UniPELT gate.

Every method is a *delta* that lives in its own modules and reaches the model through forward hooks
(OpenDelta's three moves: unfreeze-as-delta, wrap, insert). The base model's tensors are never
written, so frozen weights stay bit-identical, several named adapters can sit on one model, and
disabling them gives the base model's outputs back exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from lamina.arch import Layer, ModelMap, Site, in_out


@dataclass
class Runtime:
    """Per-model state shared by all hooks (a plain object on `model._lamina`, not a module)."""

    active: list[str] = field(default_factory=list)  # adapter names whose hooks act
    handles: dict[str, list] = field(default_factory=dict)  # adapter name -> hook handles
    mask: torch.Tensor | None = None  # the batch's attention mask, for masked-mean gates
    step: int = 0  # forward counter, for per-forward caches (prefix MLP)
    collect_gates: bool = False

    def is_active(self, name: str) -> bool:
        return name in self.active


@dataclass
class BuildContext:
    """What a method needs to build its modules for one layer."""

    mmap: ModelMap
    hidden: int
    runtime: Runtime
    name: str  # adapter name
    model: nn.Module

    def projection(self, layer: Layer, site: Site) -> nn.Module:
        return layer.block.get_submodule(site.path)

    def out_width(self, layer: Layer, site: Site) -> int:
        return in_out(self.projection(layer, site))[1] // site.parts

    def hook(self, module: nn.Module, fn, *, pre: bool = False, with_kwargs: bool = False):
        handle = (
            module.register_forward_pre_hook(fn, with_kwargs=with_kwargs)
            if pre
            else module.register_forward_hook(fn, with_kwargs=with_kwargs)
        )
        self.runtime.handles.setdefault(self.name, []).append(handle)
        return handle


def add_to_slice(out: torch.Tensor, delta: torch.Tensor, site: Site) -> torch.Tensor:
    """out + delta, where delta covers only the site's slice of a fused projection's output."""
    if site.parts == 1:
        return out + delta
    width = out.shape[-1]
    sl = site.out_slice(width)
    return out + nn.functional.pad(delta, (sl.start, width - sl.stop))


class Gate(nn.Module):
    """UniPELT gate: sigmoid(Linear(hidden, 1)(x)), averaged over the (unpadded) sequence -> one scalar
    per example. Keeps the last values and, while collecting, a running sum for reports."""

    def __init__(self, hidden: int):
        super().__init__()
        self.proj = nn.Linear(hidden, 1)
        nn.init.normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)
        self.runtime: Runtime | None = None
        self.last: torch.Tensor | None = None
        self.total = 0.0
        self.count = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = torch.sigmoid(self.proj(x))  # [B, T, 1]
        mask = self.runtime.mask if self.runtime is not None else None
        if x.dim() == 3 and mask is not None and tuple(mask.shape) == tuple(x.shape[:2]):
            m = mask.to(scores.dtype).unsqueeze(-1)
            gate = (scores * m).sum(1) / m.sum(1).clamp_min(1.0)
        else:
            gate = scores.mean(dim=tuple(range(1, scores.dim() - 1))) if scores.dim() > 2 else scores
        gate = gate.reshape(x.shape[0], *([1] * (x.dim() - 1)))  # broadcast over [B, T, H]
        self.last = gate.detach().flatten()
        if self.runtime is not None and self.runtime.collect_gates:
            self.total += float(self.last.sum())
            self.count += self.last.numel()
        return gate

    def value(self) -> float | None:
        if self.count:
            return self.total / self.count
        return float(self.last.mean()) if self.last is not None else None

    def reset(self) -> None:
        self.total, self.count, self.last = 0.0, 0, None


def first_tensor(args, kwargs, name: str = "hidden_states") -> torch.Tensor:
    """The first positional tensor argument of a forward call, or the named keyword."""
    if args and isinstance(args[0], torch.Tensor):
        return args[0]
    return kwargs.get(name)


def fold(owner: nn.Module, key: str, view: torch.Tensor, update: torch.Tensor | None, undo: bool) -> None:
    """Merge `update` into a base tensor view, keeping the original so unmerge restores it bit for bit.
    The originals live on the method's module (`owner._folds`); `owner.merged` tells hooks to stand down."""
    saved = owner.__dict__.setdefault("_folds", {})
    with torch.no_grad():
        if not undo and key not in saved:
            saved[key] = view.detach().clone()
            view.add_(update.to(view.dtype))
        elif undo and key in saved:
            view.copy_(saved.pop(key))
    owner.merged = bool(saved)
