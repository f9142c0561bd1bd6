"""Named recipes. Each is a function of the model's depth and width that returns a concrete Design,
so `spafit:n1=8,n2=16` means the same thing on every model it fits.

CLI strings: `name` or `name:key=value,key=value`; list values use '+', e.g. `lora:r=8,targets=q+v`.
"""

from __future__ import annotations

from typing import Callable

from pydantic import ValidationError

from lamina.design import Budget, Design, DesignError, Group, Prompt, at_budget, split_layers
from lamina.methods.adapter import Adapter
from lamina.methods.bitfit import BitFit
from lamina.methods.ia3 import IA3
from lamina.methods.ln import LayerNormTuning
from lamina.methods.lora import LoRA
from lamina.methods.prefix import Prefix


def _all(num_layers: int, *strategies) -> tuple[Group, ...]:
    return (Group(first=0, last=num_layers - 1, strategies=strategies),)


def full(L, H):
    return Design(name="full", full=True)


def lora(L, H, r=8, alpha=None, targets="q+v", dropout=0.0, rslora=False, dora=False):
    strategy = LoRA(r=r, alpha=alpha, targets=_targets(targets), dropout=dropout, rslora=rslora, dora=dora)
    name = "dora" if dora else "rslora" if rslora else "lora"
    return Design(name=name, groups=_all(L, strategy))


def ia3(L, H, targets="k+v+ffn"):
    """Liu et al. 2022: rescaling vectors on keys, values and the FFN's inner activation."""
    return Design(name="ia3", groups=_all(L, IA3(targets=_targets(targets))))


def bitfit(L, H, which="all"):
    return Design(name="bitfit", groups=_all(L, BitFit(which=which)))


def adapter(L, H, placement="pfeiffer", bottleneck=None, reduction_factor=16):
    size = dict(bottleneck=bottleneck) if bottleneck else dict(reduction_factor=reduction_factor)
    return Design(name=f"adapter-{placement}", groups=_all(L, Adapter(placement=placement, **size)))


def prefix(L, H, length=10, mlp=None):
    return Design(name="prefix", groups=_all(L, Prefix(length=length, mlp=mlp)))


def prompt(L, H, length=20):
    return Design(name="prompt", prompt=Prompt(length=length))


def ln(L, H):
    return Design(name="ln", groups=_all(L, LayerNormTuning()))


def unipelt(L, H, bottleneck=None, prefix_length=10, prefix_mlp=512, r=8):
    """Mao et al. 2022: gated Pfeiffer adapter (bottleneck H/16: 48 at 768), gated prefix (10, MLP 512),
    gated LoRA r=8 on query+value, in every layer."""
    return Design(
        name="unipelt",
        groups=_all(
            L,
            Adapter(bottleneck=bottleneck or max(1, H // 16), placement="pfeiffer", gated=True),
            Prefix(length=prefix_length, mlp=prefix_mlp, gated=True),
            LoRA(r=r, targets=("q", "v"), gated=True),
        ),
    )


def unipelt_prompt(L, H, prompt_length=20, **kwargs):
    """Chen, Pang & Yang 2024 (arXiv 2405.05493): UniPELT plus soft prompt tokens at the input."""
    base = unipelt(L, H, **kwargs)
    return base.model_copy(update={"name": "unipelt-prompt", "prompt": Prompt(length=prompt_length)})


def spafit(L, H, n1=None, n2=None, targets="q+v", r=8, alpha=None):
    """Arora & Wang 2024: layers < n1 frozen, n1..n2-1 BitFit, n2..L-1 LoRA + BitFit.
    Defaults: n1 = L/3, n2 = 2L/3."""
    n1 = L // 3 if n1 is None else int(n1)
    n2 = (2 * L) // 3 if n2 is None else int(n2)
    if not 0 <= n1 < n2:
        raise DesignError(f"spafit: n1 ({n1}) must be >= 0 and < n2 ({n2})")
    if n2 >= L:
        raise DesignError(f"spafit.n2: {n2} leaves no LoRA layers; this model has {L} layers (n2 <= {L - 1})")
    groups = []
    if n1 < n2:
        groups.append(Group(first=n1, last=n2 - 1, strategies=(BitFit(which="all"),)))
    groups.append(Group(first=n2, last=L - 1, strategies=(LoRA(r=r, alpha=alpha, targets=_targets(targets)), BitFit(which="all"))))
    return Design(name=f"spafit-n1{n1}-n2{n2}", groups=tuple(groups))


def s4(L, H, budget="0.5%", allocation="uniform"):
    """Chen et al. 2023 design-space recipe: spindle grouping into 4 groups, G1 (A, L), G2 (A, P),
    G3 (A, P, B), G4 (P, B, L); sizes solved from the budget. A recalled result; a configurable recipe."""
    g1, g2, g3, g4 = split_layers(L, 4, "spindle")
    A, P, L_, B = Adapter(bottleneck=None, reduction_factor=None), Prefix(length=None), LoRA(r=None), BitFit()
    plan = [(g1, (A, L_)), (g2, (A, P)), (g3, (A, P, B)), (g4, (P, B, L_))]
    groups = tuple(Group(first=a, last=b, strategies=s) for (a, b), s in plan)
    return Design(name="s4", groups=groups, budget=Budget(target=budget, allocation=allocation))


PRESETS: dict[str, Callable[..., Design]] = {
    "full": full, "lora": lora, "bitfit": bitfit, "adapter": adapter, "ia3": ia3,
    "dora": lambda L, H, **kw: lora(L, H, dora=True, **kw),
    "rslora": lambda L, H, **kw: lora(L, H, rslora=True, **kw),
    "adapter-pfeiffer": lambda L, H, **kw: adapter(L, H, placement="pfeiffer", **kw),
    "adapter-houlsby": lambda L, H, **kw: adapter(L, H, placement="houlsby", **kw),
    "adapter-parallel": lambda L, H, **kw: adapter(L, H, placement="parallel", **kw),
    "prefix": prefix, "prompt": prompt, "ln": ln, "unipelt": unipelt, "unipelt-prompt": unipelt_prompt,
    "spafit": spafit, "s4": s4,
}


def _targets(value) -> tuple[str, ...]:
    return tuple(t for t in value.replace(",", "+").split("+") if t) if isinstance(value, str) else tuple(value)


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def parse(text: str) -> tuple[str, dict]:
    """'spafit:n1=8,n2=16' -> ('spafit', {'n1': 8, 'n2': 16})."""
    name, _, rest = text.strip().partition(":")
    if name not in PRESETS:
        raise DesignError(f"unknown preset '{name}' (known: {', '.join(PRESETS)})")
    kwargs = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise DesignError(f"preset '{name}': '{item}' is not key=value")
        kwargs[key.strip()] = _value(value.strip())
    return name, kwargs


def build(text: str, num_layers: int, hidden: int) -> Design:
    """A preset's design. Every preset but s4 (which has its own) also takes `budget=` (a count or a
    percentage, with an optional `allocation=`): its sized strategies are then solved to that budget."""
    name, kwargs = parse(text)
    budget = kwargs.pop("budget", None) if name != "s4" else None
    allocation = kwargs.pop("allocation", "uniform") if budget is not None else None
    try:
        design = PRESETS[name](num_layers, hidden, **kwargs)
    except TypeError as err:
        raise DesignError(f"preset '{name}': {err}".replace("() ", " ")) from None
    if budget is None:
        return design
    try:
        return at_budget(design, budget if isinstance(budget, str) and budget.endswith("%") else int(budget), allocation)
    except (ValueError, ValidationError) as err:
        raise DesignError(f"preset '{name}': budget '{budget}' is not a count or a percentage ({err.__class__.__name__})") from None
