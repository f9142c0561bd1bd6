"""Named recipes. Each is a function of the model's depth and width that returns a concrete Design,
so `spafit:n1=8,n2=16` means the same thing on every model it fits.

CLI strings: `name` or `name:key=value,key=value`; list values use '+', e.g. `lora:r=8,targets=q+v`.

Every preset's options are typed in its signature and checked by pydantic (`_preset`) before it runs, the
same strict way as the method schemas: a count is an int (never a bool, a float or a word), a number is
finite, an option the preset does not have is refused with the list of those it has. Every failure is a
one-line `DesignError` naming the preset, the option and the value given.
"""

from __future__ import annotations

import inspect
from typing import Callable

from pydantic import ConfigDict, StrictBool, StrictInt, StrictStr, ValidationError, validate_call

from lamina.design import Budget, Design, DesignError, Group, Prompt, at_budget, plain_error, split_layers
from lamina.methods import METHODS
from lamina.methods.adapter import Adapter
from lamina.methods.bitfit import BitFit
from lamina.methods.ia3 import IA3
from lamina.methods.ln import LayerNormTuning
from lamina.methods.base import Real
from lamina.methods.lora import LoRA
from lamina.methods.prefix import Prefix

Targets = StrictStr | tuple[StrictStr, ...]  # 'q+v' or ('q', 'v')
Size = StrictInt | None  # None: left to the budget solver
_OPTIONS: dict[str, tuple[str, ...]] = {}  # preset function name -> its option names (for messages)


def _preset(fn):
    """Check a preset's options against its signature's types before it runs (pydantic, strict, finite)."""
    _OPTIONS[fn.__name__] = tuple(p for p in inspect.signature(fn).parameters if p not in ("L", "H", "kwargs"))
    return validate_call(config=ConfigDict(allow_inf_nan=False))(fn)


def _all(num_layers: int, *strategies) -> tuple[Group, ...]:
    return (Group(first=0, last=num_layers - 1, strategies=strategies),)


@_preset
def full(L, H):
    return Design(name="full", full=True)


@_preset
def lora(L, H, r: Size = 8, alpha: Real | None = None, targets: Targets = "q+v", dropout: Real = 0.0,
         rslora: StrictBool = False, dora: StrictBool = False):
    strategy = LoRA(r=r, alpha=alpha, targets=_targets(targets), dropout=dropout, rslora=rslora, dora=dora)
    name = "dora" if dora else "rslora" if rslora else "lora"
    return Design(name=name, groups=_all(L, strategy))


@_preset
def ia3(L, H, targets: Targets = "k+v+ffn"):
    """Liu et al. 2022: rescaling vectors on keys, values and the FFN's inner activation."""
    return Design(name="ia3", groups=_all(L, IA3(targets=_targets(targets))))


@_preset
def bitfit(L, H, which: StrictStr = "all"):
    return Design(name="bitfit", groups=_all(L, BitFit(which=which)))


@_preset
def adapter(L, H, placement: StrictStr = "pfeiffer", bottleneck: Size = None, reduction_factor: Real | None = None):
    """The width is `bottleneck`, or hidden / `reduction_factor` (16 when neither is given; both: refused)."""
    if bottleneck is None and reduction_factor is None:
        reduction_factor = 16
    size = dict(bottleneck=bottleneck, reduction_factor=reduction_factor)
    return Design(name=f"adapter-{placement}", groups=_all(L, Adapter(placement=placement, **size)))


@_preset
def prefix(L, H, length: Size = 10, mlp: StrictInt | None = None):
    return Design(name="prefix", groups=_all(L, Prefix(length=length, mlp=mlp)))


@_preset
def prompt(L, H, length: StrictInt = 20):
    return Design(name="prompt", prompt=Prompt(length=length))


@_preset
def ln(L, H):
    return Design(name="ln", groups=_all(L, LayerNormTuning()))


@_preset
def unipelt(L, H, bottleneck: Size = None, prefix_length: StrictInt = 10, prefix_mlp: StrictInt | None = 512,
            r: StrictInt = 8):
    """Mao et al. 2022: gated Pfeiffer adapter (bottleneck H/16: 48 at 768), gated prefix (10, MLP 512),
    gated LoRA r=8 on query+value, in every layer."""
    return Design(
        name="unipelt",
        groups=_all(
            L,
            Adapter(bottleneck=max(1, H // 16) if bottleneck is None else bottleneck, placement="pfeiffer", gated=True),
            Prefix(length=prefix_length, mlp=prefix_mlp, gated=True),
            LoRA(r=r, targets=("q", "v"), gated=True),
        ),
    )


@_preset
def unipelt_prompt(L, H, prompt_length: StrictInt = 20, **kwargs):
    """Chen, Pang & Yang 2024 (arXiv 2405.05493): UniPELT plus soft prompt tokens at the input."""
    base = unipelt(L, H, **kwargs)
    return base.model_copy(update={"name": "unipelt-prompt", "prompt": Prompt(length=prompt_length)})


@_preset
def spafit(L, H, n1: StrictInt | None = None, n2: StrictInt | None = None, targets: Targets = "q+v", r: StrictInt = 8,
           alpha: Real | None = None):
    """Arora & Wang 2024: layers < n1 frozen, n1..n2-1 BitFit, n2..L-1 LoRA + BitFit.
    Defaults: n1 = L/3, n2 = 2L/3."""
    n1 = L // 3 if n1 is None else n1
    n2 = (2 * L) // 3 if n2 is None else n2
    if not 0 <= n1 < n2:
        raise DesignError(f"spafit: n1 ({n1}) must be >= 0 and < n2 ({n2})")
    if n2 >= L:
        raise DesignError(f"spafit.n2: {n2} leaves no LoRA layers; this model has {L} layers (n2 <= {L - 1})")
    groups = []
    if n1 < n2:
        groups.append(Group(first=n1, last=n2 - 1, strategies=(BitFit(which="all"),)))
    groups.append(Group(first=n2, last=L - 1, strategies=(LoRA(r=r, alpha=alpha, targets=_targets(targets)), BitFit(which="all"))))
    return Design(name=f"spafit-n1{n1}-n2{n2}", groups=tuple(groups))


@_preset
def s4(L, H, budget="0.5%", allocation: StrictStr = "uniform"):  # the Budget schema checks the budget
    """Chen et al. 2023 design-space recipe: spindle grouping into 4 groups, G1 (A, L), G2 (A, P),
    G3 (A, P, B), G4 (P, B, L); sizes solved from the budget. A recalled result; a configurable recipe."""
    g1, g2, g3, g4 = split_layers(L, 4, "spindle")
    A, P, L_, B = Adapter(bottleneck=None, reduction_factor=None), Prefix(length=None), LoRA(r=None), BitFit()
    plan = [(g1, (A, L_)), (g2, (A, P)), (g3, (A, P, B)), (g4, (P, B, L_))]
    groups = tuple(Group(first=a, last=b, strategies=s) for (a, b), s in plan)
    return Design(name="s4", groups=groups, budget=Budget(target=budget, allocation=allocation))


def _variant(name: str, fn, **fixed):
    """`fn` with some options fixed (dora = lora with dora=True); giving a fixed option is refused."""
    def make(L, H, **kwargs):
        for key in kwargs:
            if key in fixed:
                raise DesignError(f"preset '{name}': option '{key}' is fixed to {fixed[key]!r} by this preset")
        return fn(L, H, **fixed, **kwargs)

    make.base, make.fixed = fn.__name__, fixed
    return make


PRESETS: dict[str, Callable[..., Design]] = {
    "full": full, "lora": lora, "bitfit": bitfit, "adapter": adapter, "ia3": ia3,
    "dora": _variant("dora", lora, dora=True),
    "rslora": _variant("rslora", lora, rslora=True),
    "adapter-pfeiffer": _variant("adapter-pfeiffer", adapter, placement="pfeiffer"),
    "adapter-houlsby": _variant("adapter-houlsby", adapter, placement="houlsby"),
    "adapter-parallel": _variant("adapter-parallel", adapter, placement="parallel"),
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
            raise DesignError(f"preset '{name}': '{item}' is not key=value (options are separated by ',', "
                              "list items by '+', e.g. 'lora:r=8,targets=q+v')")
        if key.strip() in kwargs:
            raise DesignError(f"preset '{name}': option '{key.strip()}' is given twice")
        kwargs[key.strip()] = _value(value.strip())
    return name, kwargs


def options(name: str) -> tuple[str, ...]:
    """The options preset `name` takes (budget/allocation included where it takes them)."""
    fn = PRESETS[name]
    base = getattr(fn, "base", fn.__name__)
    own = tuple(o for o in _OPTIONS.get(base, ()) if o not in getattr(fn, "fixed", {}))
    if name == "unipelt-prompt":
        own = own + _OPTIONS["unipelt"]
    return own if name == "s4" else own + ("budget", "allocation")


def _refusal(name: str, err: ValidationError, given: dict | None = None) -> DesignError:
    """A preset's failed check as one line naming the preset, the option (as the user spelled it: a
    preset's `prefix_length` is its prefix's `length`) and the value."""
    first = err.errors()[0]
    if first.get("type") in ("unexpected_keyword_argument", "extra_forbidden"):
        option = ".".join(str(p) for p in first["loc"])
        return DesignError(f"preset '{name}': unknown option '{option}' (options: {', '.join(options(name))})")
    message = plain_error(err)
    if message.startswith("target: "):  # the Budget schema's field is the preset's `budget` option
        message = "budget: " + message.removeprefix("target: ")
    field = str(first["loc"][-1]) if first.get("loc") else ""
    if given and field and field not in given and message.startswith(f"{field}: "):
        spelled = [k for k, v in given.items() if k.endswith(f"_{field}") and v == first.get("input")]
        if len(spelled) == 1:
            message = f"{spelled[0]}: " + message.removeprefix(f"{field}: ")
    return DesignError(f"preset '{name}': {message}")


def build(text: str, num_layers: int, hidden: int) -> Design:
    """A preset's design. Every preset but s4 (which has its own) also takes `budget=` (a count or a
    percentage, with an optional `allocation=`): its sized strategies are then solved to that budget."""
    name, kwargs = parse(text)
    budget = kwargs.pop("budget", None) if name != "s4" else None
    allocation = kwargs.pop("allocation", "uniform") if budget is not None else None
    try:
        design = PRESETS[name](num_layers, hidden, **kwargs)
    except ValidationError as err:
        raise _refusal(name, err, kwargs) from None
    if budget is None:
        return design
    if design.full or not any(METHODS[s.method].size_field for g in design.groups for s in g.strategies):
        raise DesignError(f"preset '{name}': budget: this preset has no size to solve from a budget "
                          "(it trains a fixed set of parameters); leave budget out")
    try:
        return at_budget(design, budget, allocation)
    except ValidationError as err:
        raise _refusal(name, err) from None
