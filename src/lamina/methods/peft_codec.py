"""How a method maps to the Hugging Face PEFT adapter format: the `PeftCodec` a method declares as its
`peft` attribute, and the helpers codecs share (PEFT's own target and pattern matchers).

`lamina.peft_format` does what is the same for every PEFT type (folders, task types, the base model,
head copies, which modules a config targets, grouping layers into a design); a codec does what is its
method's own (tensor names, sizes, config fields). A method without a codec cannot be exported.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from lamina.arch import CANONICAL_TARGETS, Layer, ModelMap
from lamina.errors import LaminaError


@dataclass
class PeftModule:
    """One adapted module in PEFT's format."""

    layer: Layer
    site_path: str  # block-relative module path
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # PEFT tensor suffix -> tensor
    options: tuple = ()  # per-module settings PEFT writes as patterns (LoRA: (r, alpha))
    feedforward: bool = False  # IA3: the module's input is scaled, not its output


class PeftCodec:
    """Base of a method's PEFT mapping; the method file subclasses it."""

    peft_type: ClassVar[str]  # PEFT's `peft_type` ("LORA", "IA3")
    config_class: ClassVar[str]  # the peft config class that reads the folder ("LoraConfig")

    def refuse(self, strategy) -> str | None:
        """Why this strategy cannot be written in PEFT's format (None: it can)."""
        return None

    def export_layer(self, strategy, layer: Layer, mmap: ModelMap, tensors: dict, prefix: str) -> dict[str, PeftModule]:
        """The layer's adapted modules keyed by full module path; consumes (pops) the lamina tensors
        `prefix + <relative key>` it writes."""
        raise NotImplementedError

    def export_config(self, modules: dict[str, PeftModule], strategies: list, names: list[str], modules_to_save) -> dict:
        """The config fields of this PEFT type (targets included)."""
        raise NotImplementedError

    def check_config(self, cfg: dict, path) -> None:
        """Refuse options lamina has no equivalent for, in one line naming them."""

    def read_module(self, config, path: str, tensors: dict) -> dict:
        """This module's settings and tensors from a PEFT folder (pops the tensors it reads)."""
        raise NotImplementedError

    def layer_strategy(self, config, layer: Layer, mmap: ModelMap, found: dict[str, dict]) -> tuple:
        """(strategy, {relative lamina key: tensor}) for one layer from its modules' `read_module` results."""
        raise NotImplementedError


def peft_matchers():
    """PEFT's own target matcher and pattern-key lookup, or None when peft is not installed."""
    try:
        import peft  # noqa: F401
        from peft.tuners.tuners_utils import check_target_module_exists
        from peft.utils.other import get_pattern_key
    except ImportError:
        return None
    return check_target_module_exists, get_pattern_key


def number(x: float):
    return int(x) if float(x).is_integer() else float(x)


def tensor(tensors: dict, key: str, path: str, weights_file: str) -> torch.Tensor:
    if key not in tensors:
        raise LaminaError(f"{weights_file}: tensor '{key}' is missing (the config targets '{path}')")
    return tensors.pop(key)


def compact_targets(modules: dict[str, PeftModule], names: list[str], modules_to_save) -> dict:
    """The most compact target_modules / layers_to_transform that PEFT resolves to exactly `modules`."""
    relative = sorted({m.site_path for m in modules.values()})
    leaves = sorted({site.rsplit(".", 1)[-1] for site in relative})
    local = sorted({m.layer.local_index for m in modules.values()})
    patterns = sorted({m.layer.path.rsplit(".", 2)[-2] for m in modules.values()})  # 'bert.encoder.layer.3' -> 'layer'
    pattern = patterns[0] if len(patterns) == 1 else patterns
    candidates = []
    for targets in (leaves, relative):
        candidates.append(dict(target_modules=targets, layers_to_transform=None, layers_pattern=None))
        candidates.append(dict(target_modules=targets, layers_to_transform=local, layers_pattern=pattern))
    exact = dict(target_modules=sorted(modules), layers_to_transform=None, layers_pattern=None)
    peft = peft_matchers()
    if peft is None:
        return exact  # full module names: unambiguous without asking PEFT
    check = peft[0]
    for candidate in candidates + [exact]:
        probe = type("Probe", (), dict(candidate, exclude_modules=None, modules_to_save=modules_to_save, target_parameters=None))
        if {n for n in names if check(probe, n)} == set(modules):
            return candidate
    raise LaminaError("PEFT's target matching cannot single out exactly the adapted modules of this design")


def patterns(modules: dict[str, PeftModule]) -> tuple[int, float, dict, dict]:
    """Default r / alpha = the most common pair; the other modules get rank_pattern / alpha_pattern
    entries keyed by their full module name (checked against PEFT's own pattern matcher)."""
    (r, alpha), _ = Counter(m.options for m in modules.values()).most_common(1)[0]
    rank = {path: m.options[0] for path, m in modules.items() if m.options[0] != r}
    alphas = {path: number(m.options[1]) for path, m in modules.items() if m.options[1] != alpha}
    peft = peft_matchers()
    if peft is not None:
        get_key = peft[1]
        for path, m in modules.items():
            if rank.get(get_key(rank.keys(), path), r) != m.options[0] or alphas.get(get_key(alphas.keys(), path), alpha) != m.options[1]:
                raise LaminaError(f"PEFT's rank_pattern matching would give '{path}' the wrong rank or alpha")
    return r, number(alpha), rank, alphas


def lamina_targets(mmap: ModelMap, layer: Layer, sites: set[str]) -> tuple[str, ...]:
    """Canonical names where they cover whole target sets (q, v, ffn_in...), native paths for the rest."""
    left, chosen = set(sites), []
    for target in CANONICAL_TARGETS:
        found = mmap.sites(layer, target)
        paths = {s.path for s in found}
        if found and all(s.parts == 1 for s in found) and paths <= left:
            chosen.append(target)
            left -= paths
    for path in sorted(left):
        if [s.path for s in mmap.sites(layer, path)] != [path]:
            raise LaminaError(f"layer {layer.index}: cannot name the module '{path}' unambiguously as a lamina target")
        chosen.append(path)
    return tuple(chosen)
