"""The design: groups of consecutive layers, each with PEFT strategies, plus design-level options.

This schema is what users write (YAML/JSON/Python/CLI string) and what `lamina.save` writes next to the
weights, so a saved adapter is rebuilt by the same one builder (`lamina.apply`) that trained it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, StrictBool, StrictInt, ValidationError, field_validator, model_validator

from lamina.errors import DesignError
from lamina.methods import METHODS, Strategy, method_named


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_strategy(item, where: str = "strategy") -> Strategy:
    """A strategy from its schema object, a bare method name, `{name: {options}}` or
    `{"method": name, ...options}`, checked by the registered method's own schema."""
    if isinstance(item, Strategy):
        return item
    if item is None or item == {}:
        raise DesignError(f"{where}: empty; give a method name (e.g. lora) or {{lora: {{r: 8}}}}")
    if isinstance(item, str):
        item = {"method": item}
    elif isinstance(item, dict) and "method" not in item and len(item) > 1:
        raise DesignError(f"{where}: one strategy per item, found {len(item)} methods ({', '.join(map(str, item))}); "
                          "write them as separate items of the list")
    elif isinstance(item, dict) and "method" not in item and len(item) == 1:
        (name, options), = item.items()
        if options is not None and not isinstance(options, dict):
            raise DesignError(f"{where}: the options of '{name}' must be a mapping, not {type(options).__name__}")
        item = {"method": name, **(options or {})}
    if not isinstance(item, dict) or not isinstance(item.get("method"), str) or item["method"] not in METHODS:
        name = item.get("method") if isinstance(item, dict) else item
        raise DesignError(f"{where}: unknown method '{name}' (known: {', '.join(METHODS)})")
    item = dict(item)
    if isinstance(item.get("targets"), str):
        item["targets"] = tuple(t for t in item["targets"].replace(",", "+").split("+") if t)
    try:
        return method_named(item["method"]).parse(item)
    except ValidationError as err:
        raise DesignError(f"{where}.{plain_error(err)}") from None


class Group(_Strict):
    """A contiguous, inclusive layer range [first, last] and the strategies trained there.
    `stack` ("encoder"/"decoder") makes the indices relative to that stack of an encoder-decoder model."""

    first: StrictInt
    last: StrictInt
    stack: Literal["encoder", "decoder"] | None = None
    strategies: tuple[SerializeAsAny[Strategy], ...] = ()

    @field_validator("strategies", mode="before")
    @classmethod
    def _parse(cls, value):
        return tuple(_strategy_list(value, "strategies"))

    @model_validator(mode="after")
    def _order(self):
        if self.first < 0 or self.last < self.first:
            raise ValueError(f"layers {self.first}-{self.last} are not a range first <= last, first >= 0")
        if not self.strategies:
            raise ValueError(f"layers {self.first}-{self.last} have no strategies; list at least one "
                             "(layers in no group stay frozen, so leave them out to freeze them)")
        methods = [s.method for s in self.strategies]
        for m in set(methods):
            if methods.count(m) > 1:
                raise ValueError(f"method '{m}' appears twice in one group")
        return self

    @property
    def layers(self) -> range:
        return range(self.first, self.last + 1)


class Prompt(_Strict):
    """Soft prompt tokens inserted at the input embeddings (design-level, not a layer strategy)."""

    length: StrictInt = Field(20, gt=0)
    init: Literal["vocab", "random"] = "vocab"


class Budget(_Strict):
    """A target number of trainable parameters (absolute, or a percentage of the base model)."""

    target: int | str = Field(..., description="e.g. 300000 or '0.5%'")
    allocation: Literal["uniform", "increasing", "decreasing"] = "uniform"

    @field_validator("target", mode="before")
    @classmethod
    def _parse(cls, value):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"budget target must be a count or a percentage like '0.5%', not {value!r}")
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError(f"budget target {value} is not a finite number")
            if not value.is_integer():
                raise ValueError(f"budget target {value} is not a whole number of parameters (write '{value}%' for a percentage)")
            value = int(value)
        if isinstance(value, str):
            text = value.strip()
            number = text[:-1] if text.endswith("%") else text
            try:
                amount = float(number)
            except ValueError:
                raise ValueError(f"budget target '{value}' is neither a count nor a percentage") from None
            if not math.isfinite(amount):
                raise ValueError(f"budget target '{value}' is not a finite number")
            if amount <= 0:
                raise ValueError("budget target must be > 0")
            if text.endswith("%") and amount > 100:
                raise ValueError(f"budget target {text} is more than the whole model (at most 100%)")
            return text if text.endswith("%") else int(amount)
        if value <= 0:
            raise ValueError("budget target must be > 0")
        return value

    def resolve(self, base_params: int) -> int:
        """The target in parameters; a count above the base model's own (without its head) is refused: sizes
        solved to it would allocate more than the whole model before anything else could fail."""
        if isinstance(self.target, str):
            return int(round(base_params * float(self.target[:-1]) / 100.0))
        if self.target > base_params:
            raise DesignError(f"budget.target: {self.target:,} parameters is more than the whole model "
                              f"({base_params:,} without its head); give at most that, or a percentage like '0.5%'")
        return int(self.target)


class Design(_Strict):
    """Groups x strategies + global options. Layers in no group stay frozen."""

    name: str | None = None
    groups: tuple[Group, ...] = ()
    prompt: Prompt | None = None
    train_head: StrictBool = True
    full: StrictBool = Field(False, description="full fine-tuning: every parameter trains (the baseline)")
    budget: Budget | None = None

    @model_validator(mode="after")
    def _no_overlap(self):
        spans = sorted(((g.stack or "", g.first, g.last, i) for i, g in enumerate(self.groups)))
        for (s1, a1, b1, i1), (s2, a2, b2, i2) in zip(spans, spans[1:]):
            if s1 == s2 and a2 <= b1:
                raise ValueError(f"groups[{i1}] (layers {a1}-{b1}) and groups[{i2}] (layers {a2}-{b2}) overlap")
        return self

    # --- (de)serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Every field, None included: a size left None means "solve from the budget", not "default"."""
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "Design":
        try:
            return cls.model_validate(_normalise(data))
        except ValidationError as err:
            raise DesignError(plain_error(err)) from None

    @classmethod
    def from_file(cls, path: str | Path) -> "Design":
        path = Path(path)
        if not path.is_file():
            from lamina.util import not_a_file

            raise DesignError(f"design file {not_a_file(path)}: {path}")
        from lamina.checks import load_yaml

        data = load_yaml(path, "design file", DesignError)  # YAML is a superset of JSON
        if not isinstance(data, dict):
            raise DesignError(f"{path}: a design must be a mapping with 'groups'")
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        from lamina.util import atomic_write_text

        path = Path(path)
        text = yaml.safe_dump(self.to_dict(), sort_keys=False) if path.suffix in (".yaml", ".yml") else self.to_json()
        atomic_write_text(path, text)

    def check_depth(self, num_layers: int, stacks: dict[str, int] | None = None) -> None:
        """Fail on groups that reach past the model's layers (or past their stack)."""
        for i, g in enumerate(self.groups):
            limit = (stacks or {}).get(g.stack, num_layers) if g.stack else num_layers
            if g.stack and stacks is not None and g.stack not in stacks:
                raise DesignError(f"groups[{i}].stack: this model has no '{g.stack}' stack")
            if g.last >= limit:
                where = f"the {g.stack} stack" if g.stack else "the model"
                raise DesignError(f"groups[{i}].last: layer {g.last} is out of range, {where} has {limit} layers (0-{limit - 1})")


def at_budget(design: Design, target, allocation: str = "uniform") -> Design:
    """The same design with every sized strategy left to the budget solver and `target` as its budget,
    so designs can be compared at one equal parameter count (`apply` solves the sizes). Strategies
    without a size (BitFit, LayerNorm) keep their fixed cost."""
    groups = []
    for group in design.groups:
        strategies = tuple(METHODS[s.method].resized(s, None) for s in group.strategies)
        groups.append(group.model_copy(update={"strategies": strategies}))
    budget = Budget(target=target, allocation=allocation)
    return design.model_copy(update={"groups": tuple(groups), "budget": budget})


# design fields that hold a mapping, and what the message says is accepted there
_MAPPINGS = {"prompt": "a mapping like {length: 20}", "budget": "a mapping like {target: '0.5%'}"}


def _normalise(data: dict) -> dict:
    """Accept friendly spellings: `layers: "8-11" | [8, 11] | 8 | "all"`, strategies as `{lora: {...}}`,
    and a single strategy instead of a one-item list (`strategies: lora`). Every other shape of the
    structural fields is refused here, naming the field and what it accepts (pydantic checks the values)."""
    data = dict(data)
    raw = data.get("groups")
    if raw is None:
        raw = []
    if not isinstance(raw, (list, tuple)):
        raise DesignError(f"groups: must be a list of groups like [{{layers: 0-3, strategies: [lora]}}], "
                          f"not {_kind(raw)}")
    for key, accepted in _MAPPINGS.items():
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise DesignError(f"{key}: must be {accepted}, not {_kind(data[key])}")
    groups = []
    for i, group in enumerate(raw):
        if not isinstance(group, dict):
            raise DesignError(f"groups[{i}]: must be a mapping with 'layers' and 'strategies', not {_kind(group)}")
        group = dict(group)
        if "layers" in group:
            group["first"], group["last"] = _parse_layers(group.pop("layers"), f"groups[{i}].layers")
        group["strategies"] = _strategy_list(group.get("strategies"), f"groups[{i}].strategies")
        groups.append(group)
    data["groups"] = groups
    return data


def _strategy_list(items, where: str) -> list:
    """A group's strategies: a list of them, or one alone (a method name or a `{name: options}` mapping)."""
    if items is None:
        items = []
    elif isinstance(items, (str, dict, Strategy)):
        items = [items]
    elif not isinstance(items, (list, tuple)):
        raise DesignError(f"{where}: must be a list of strategies like [lora, {{adapter: {{bottleneck: 8}}}}], "
                          f"not {_kind(items)}")
    return [parse_strategy(item, f"{where}[{j}]") for j, item in enumerate(items)]


def _kind(value) -> str:
    """How a message names a wrong value: its type and, when short, the value."""
    name = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "a mapping", type(None): "null"}.get(type(value), type(value).__name__)
    text = repr(value)
    return f"{name} ({text})" if value is not None and len(text) <= 40 else name


def _parse_layers(value, field: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(type(v) is int for v in value):
        return value[0], value[1]
    if isinstance(value, str) and "-" in value:
        a, _, b = value.partition("-")
        if a.strip().isdigit() and b.strip().isdigit():
            return int(a), int(b)
    raise DesignError(f"{field}: '{value}' is not a layer range (use 8, [8, 11] or '8-11', inclusive)")


_TYPE_TAGS = {"str", "int", "float", "bool", "none", "dict", "list", "tuple"}


def plain_error(err: ValidationError) -> str:
    """The first problem pydantic found, as plain words: `field: what is wrong (got value)`."""
    e = err.errors()[0]
    # the location, without the tags pydantic adds for a union's members ('str', 'function-after[...]')
    parts = [p for p in e["loc"] if not (isinstance(p, str) and (p in _TYPE_TAGS or "[" in p or "-" in p))]
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")  # groups[0].strategies
    msg = e["msg"].removeprefix("Value error, ")
    if e.get("type") == "extra_forbidden":
        msg = "unknown option"
    got = e.get("input")
    shown = isinstance(got, str) and repr(got) in msg  # the message already quotes it
    if isinstance(got, (bool, int, float, str)) and e.get("type") != "extra_forbidden" and not shown:
        msg += f" (got {got!r})"
    return f"{loc}: {msg}" if loc else msg


PATTERNS = ("increasing", "uniform", "decreasing", "spindle", "bottleneck")


def pattern_weights(pattern: str, k: int) -> list[int]:
    """Relative group sizes. spindle: small-large-small (1,2,...,2,1); bottleneck: its inverse."""
    if pattern == "uniform":
        return [1] * k
    if pattern == "increasing":
        return list(range(1, k + 1))
    if pattern == "decreasing":
        return list(range(k, 0, -1))
    spindle = [min(i + 1, k - i) for i in range(k)]
    if pattern == "spindle":
        return spindle
    if pattern == "bottleneck":
        return [max(spindle) + 1 - w for w in spindle]
    raise DesignError(f"grouping pattern '{pattern}' is unknown (known: {', '.join(PATTERNS)})")


def split_layers(num_layers: int, k: int, pattern: str) -> list[tuple[int, int]]:
    """Split layers 0..L-1 into K consecutive groups sized in proportion to the pattern's weights.

    Rule: size_i = L·w_i/Σw, floored; the layers left over go one each to the groups with the largest
    remainders (ties: the later group); every group keeps at least one layer. Returns inclusive ranges.
    Example, L=12, K=4: spindle [2,4,4,2], increasing [1,2,4,5], bottleneck [4,2,2,4].
    """
    if k <= 0 or num_layers < k:
        raise DesignError(f"cannot split {num_layers} layers into {k} groups")
    weights = pattern_weights(pattern, k)
    exact = [num_layers * w / sum(weights) for w in weights]
    sizes = [max(1, int(x)) for x in exact]
    order = sorted(range(k), key=lambda i: (exact[i] - int(exact[i]), i), reverse=True)
    i = 0
    while sum(sizes) < num_layers:
        sizes[order[i % k]] += 1
        i += 1
    while sum(sizes) > num_layers:  # only when max(1, ...) lifted a group
        j = max(range(k), key=lambda g: sizes[g])
        sizes[j] -= 1
    bounds, start = [], 0
    for size in sizes:
        bounds.append((start, start + size - 1))
        start += size
    return bounds
