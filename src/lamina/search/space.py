"""The design space of Chen et al. (ICLR 2023, arXiv 2301.01821): four components under one budget.

A `SearchSpace` (loaded from YAML) lists the choices of each component:

- **grouping**: how the L layers are split into K consecutive groups (`design.PATTERNS`);
- **allocation**: how the budget is spread over the tuned layers (`Budget.allocation`);
- **tunable**: which groups train (a non-empty subset; layers of the other groups stay frozen);
- **strategies**: per tuned group, a non-empty subset of the searchable methods (those with a search
  letter in the method registry; the paper's space: adapter A, prefix P, bitfit B, lora L).

A `Point` fixes one choice per component; `SearchSpace.design(point, num_layers)` turns it into an
ordinary `Design` whose sized strategies have size=None and whose `Budget` is the space's budget, so the
budget solver (`lamina.apply`) picks every rank / bottleneck / prefix length. Every design of a search
therefore costs the same number of trainable parameters (within the solver's tolerance) and designs
compete on where the parameters go, not on how many there are.

Sampling is seeded: `sample(n, stage, fixed, seed)` draws from `random.Random(<string seed>)`, which
Python hashes with SHA-512, so the same seed, space and fixed choices give the same designs on every
machine and every run (that is what lets several workers agree on a stage's candidates).
"""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, field_validator, model_validator

from lamina.design import PATTERNS, Budget, Design, Group, split_layers
from lamina.errors import LaminaError
from lamina.methods import METHODS, searchable

COMPONENTS = ("grouping", "allocation", "tunable", "strategies")
ALLOCATIONS = ("increasing", "uniform", "decreasing")


def strategy_order() -> tuple[str, ...]:
    """Every method the search may assign, in registry order (the order labels list them in)."""
    return tuple(m.name for m in searchable())


def letter_of(method: str) -> str:
    return METHODS[method].letter


def is_sized(method: str) -> bool:
    """A design needs a sized method (one the budget solver sizes) to meet a budget."""
    return METHODS[method].size_field is not None


def default_choices() -> tuple[str, ...]:
    return tuple(m.name for m in searchable() if m.in_default_space)


class SpaceError(LaminaError):
    """A search space file that cannot be used; the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TunableSpec(_Strict):
    """`choices: all` = every non-empty subset of the groups (1-based), or an explicit list of subsets.
    `analysis: marginal` compares, per group, the trials that train it with those that do not;
    `analysis: choice` compares whole subsets (give a short `choices` list and enough trials)."""

    choices: Literal["all"] | tuple[tuple[StrictInt, ...], ...] = "all"
    analysis: Literal["marginal", "choice"] = "marginal"


class StrategySpec(_Strict):
    """The strategies a group may get (each group: a non-empty subset) and their fixed options, written
    per method (`lora: {targets: [q, v]}`; each method's `search_options` are the defaults). Sizes are
    never given here: the budget solver sets them."""

    choices: tuple[str, ...] = Field(default_factory=default_choices)
    options: dict[str, dict] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _gather(cls, data):
        """Per-method keys go into `options`, every searchable method's defaults filled in."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        given = dict(data.pop("options", None) or {})
        for name in list(data):
            if name not in ("choices",):
                if name not in METHODS or not METHODS[name].letter:
                    raise ValueError(f"'{name}' is not a method the search can assign (searchable: {', '.join(strategy_order())})")
                given[name] = data.pop(name)
        for name, value in given.items():
            if not isinstance(value, dict):
                raise ValueError(f"{name}: options must be a mapping, not {type(value).__name__}")
        data["options"] = {m: {**METHODS[m].search_options, **given.get(m, {})} for m in strategy_order()}
        return data

    @field_validator("choices")
    @classmethod
    def _choices(cls, value):
        if not value or len(set(value)) != len(value):
            raise ValueError("must list at least one strategy, each once")
        unknown = [m for m in value if m not in strategy_order()]
        if unknown:
            raise ValueError(f"'{unknown[0]}' is not a method the search can assign (searchable: {', '.join(strategy_order())})")
        if not any(is_sized(m) for m in value):
            sized = ", ".join(m for m in strategy_order() if is_sized(m))
            raise ValueError(f"needs at least one sized strategy ({sized}) to meet a budget")
        return value

    @model_validator(mode="after")
    def _options(self):
        for method, options in self.options.items():
            for forbidden in METHODS[method].size_options():
                if forbidden in options:
                    raise ValueError(f"{method}.{forbidden}: sizes come from the budget; leave it out")
            _strategy(method, options)  # the options must build a valid strategy
        return self

    def of(self, method: str) -> dict:
        return self.options[method]


class SearchSpace(_Strict):
    """Four components, one budget, one seed. See docs/search/space.yaml for a commented example."""

    groups: StrictInt = Field(4, ge=1, description="K: number of consecutive layer groups")
    budget: int | str = Field("0.5%", description="trainable parameters without the head: count or '0.5%'")
    seed: StrictInt = 0
    stages: tuple[Literal["grouping", "allocation", "tunable", "strategies"], ...] = COMPONENTS
    grouping: tuple[Literal["increasing", "uniform", "decreasing", "spindle", "bottleneck"], ...] = PATTERNS
    allocation: tuple[Literal["increasing", "uniform", "decreasing"], ...] = ALLOCATIONS
    tunable: TunableSpec = Field(default_factory=TunableSpec)
    strategies: StrategySpec = Field(default_factory=StrategySpec)
    train_head: StrictBool = True

    @field_validator("budget", mode="before")
    @classmethod
    def _budget(cls, value):
        if isinstance(value, bool):  # before pydantic would read `true` as 1 parameter
            raise ValueError(f"must be a parameter count or a percentage like '0.5%', not {value}")
        return Budget(target=value).target  # same parsing and messages as a design's budget

    @field_validator("stages")
    @classmethod
    def _stages(cls, value):
        if sorted(value) != sorted(COMPONENTS):
            raise ValueError(f"must order all four components once each: {', '.join(COMPONENTS)}")
        return value

    @field_validator("grouping", "allocation")
    @classmethod
    def _non_empty(cls, value):
        if not value or len(set(value)) != len(value):
            raise ValueError("must list at least one choice, each once")
        return value

    @model_validator(mode="after")
    def _tunable(self):
        if self.tunable.choices != "all":
            if not self.tunable.choices:
                raise ValueError("tunable.choices: list at least one subset of groups")
            for subset in self.tunable.choices:
                if not subset or len(set(subset)) != len(subset) or not all(1 <= g <= self.groups for g in subset):
                    raise ValueError(f"tunable.choices: {list(subset)} is not a non-empty subset of groups 1..{self.groups}")
        return self

    # --- loading ---------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict) -> "SearchSpace":
        data = dict(data)
        for key in ("tunable", "strategies"):  # shorthand: `tunable: all`, `strategies: [lora, adapter]`
            if isinstance(data.get(key), (str, list)):
                data[key] = {"choices": data[key]}
        for key in ("grouping", "allocation"):
            if isinstance(data.get(key), str):
                data[key] = [data[key]]
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            e = err.errors()[0]
            loc = ".".join(str(p) for p in e["loc"])
            msg = e["msg"].replace("Value error, ", "")
            raise SpaceError(f"{loc}: {msg}" if loc else msg) from None

    @classmethod
    def from_file(cls, path: str | Path) -> "SearchSpace":
        from lamina.checks import load_yaml

        path = Path(path)
        if not path.is_file():
            from lamina.util import not_a_file

            raise SpaceError(f"search space file {not_a_file(path)}: {path}")
        data = load_yaml(path, "search space file", SpaceError)
        if not isinstance(data, dict):
            raise SpaceError(f"{path}: a search space must be a mapping (see docs/search/space.yaml)")
        try:
            return cls.from_dict(data)
        except SpaceError as err:
            raise SpaceError(f"{path}: {err}") from None

    @classmethod
    def default(cls) -> "SearchSpace":
        """The shipped default_space.yaml; the model's defaults are the same space (a test holds them
        equal), so an install without the YAML file still gets it."""
        path = default_space_file()
        return cls.from_file(path) if path.is_file() else cls()

    def to_dict(self) -> dict:
        return json.loads(self.model_dump_json())

    # --- choices ---------------------------------------------------------------------------------
    def tunable_choices(self) -> list[tuple[int, ...]]:
        if self.tunable.choices != "all":
            return [tuple(sorted(s)) for s in self.tunable.choices]
        groups = range(1, self.groups + 1)
        return [s for n in range(1, self.groups + 1) for s in itertools.combinations(groups, n)]

    def strategy_subsets(self) -> list[tuple[str, ...]]:
        methods = self.strategies.choices
        return [s for n in range(1, len(methods) + 1) for s in itertools.combinations(methods, n)]

    def choices(self, component: str) -> list:
        """Whole-value choices of a component (strategies: the per-group subsets)."""
        return {
            "grouping": lambda: list(self.grouping),
            "allocation": lambda: list(self.allocation),
            "tunable": self.tunable_choices,
            "strategies": self.strategy_subsets,
        }[component]()

    def analysis(self, component: str) -> str:
        return {"tunable": self.tunable.analysis, "strategies": "marginal"}.get(component, "choice")

    # --- points and designs ----------------------------------------------------------------------
    def strategy(self, method: str):
        """The method's strategy with this space's options, its size left to the budget solver."""
        return _strategy(method, self.strategies.of(method))

    def design(self, point: "Point", num_layers: int, name: str | None = None) -> Design:
        """The budget-sized Design of a point: tuned groups only, sizes None, the space's budget."""
        bounds = split_layers(num_layers, self.groups, point.grouping)
        groups = []
        for g in point.tunable:
            first, last = bounds[g - 1]
            methods = point.strategies[g - 1]
            strategies = tuple(_strategy(m, self.strategies.of(m)) for m in strategy_order() if m in methods)
            groups.append(Group(first=first, last=last, strategies=strategies))
        return Design(name=name or point.label(), groups=tuple(groups), train_head=self.train_head,
                      budget=Budget(target=self.budget, allocation=point.allocation))

    def sample(self, n: int, stage: str, fixed: dict, seed: int | None = None,
               feasible: Callable[["Point"], bool] | None = None, attempts: int = 200) -> list["Point"]:
        """`n` points for the stage studying `stage`: components in `fixed` keep their value, the others
        are drawn uniformly. In choice analysis the studied component cycles through its choices in a
        seeded random order (every choice gets n // #choices or one more trials); marginal analysis draws
        it uniformly. Points failing `feasible` (or training no sized strategy) are redrawn."""
        seed = self.seed if seed is None else seed
        rng = random.Random(f"lamina-search|{seed}|{stage}|{json.dumps(_jsonable(fixed), sort_keys=True)}")
        cycle = []
        if self.analysis(stage) == "choice":
            cycle = self.choices(stage)
            rng.shuffle(cycle)
        points = []
        for i in range(n):
            for _ in range(attempts):
                values = {c: fixed[c] if c in fixed else self._draw(c, rng) for c in COMPONENTS}
                if cycle:
                    values[stage] = cycle[i % len(cycle)]
                point = Point(**values)
                if point.trains_sized() and (feasible is None or feasible(point)):
                    points.append(point)
                    break
            else:
                raise SpaceError(f"stage {stage}: no feasible design after {attempts} draws (budget {self.budget} "
                                 "too small for this model, or the fixed choices leave no sized strategy)")
        return points

    def _draw(self, component: str, rng: random.Random):
        if component == "strategies":
            subsets = self.strategy_subsets()
            return tuple(rng.choice(subsets) for _ in range(self.groups))
        return rng.choice(self.choices(component))


@dataclass(frozen=True)
class Point:
    """One choice per component. `tunable`: 1-based group numbers; `strategies[g-1]`: methods of group g."""

    grouping: str
    allocation: str
    tunable: tuple[int, ...]
    strategies: tuple[tuple[str, ...], ...]

    def __post_init__(self):
        object.__setattr__(self, "tunable", tuple(sorted(self.tunable)))
        object.__setattr__(self, "strategies", tuple(tuple(m for m in strategy_order() if m in s) for s in self.strategies))

    def trains_sized(self) -> bool:
        return any(is_sized(m) for g in self.tunable for m in self.strategies[g - 1])

    def label(self) -> str:
        groups = " ".join(f"G{g}({subset_label(self.strategies[g - 1])})" for g in self.tunable)
        return f"{self.grouping}/{self.allocation}/{groups}"

    def to_dict(self) -> dict:
        return {"grouping": self.grouping, "allocation": self.allocation, "tunable": list(self.tunable),
                "strategies": [list(s) for s in self.strategies]}

    @classmethod
    def from_dict(cls, data: dict) -> "Point":
        return cls(grouping=data["grouping"], allocation=data["allocation"], tunable=tuple(data["tunable"]),
                   strategies=tuple(tuple(s) for s in data["strategies"]))

    def value(self, component: str):
        return getattr(self, component)


def subset_label(methods) -> str:
    """The methods' search letters in registry order, e.g. 'A+L' (the paper's letters)."""
    return "+".join(letter_of(m) for m in strategy_order() if m in methods) or "-"


def choice_label(component: str, value) -> str:
    if component == "tunable":
        return "+".join(f"G{g}" for g in value)
    if component == "strategies":
        return " ".join(f"G{g}:{subset_label(s)}" for g, s in enumerate(value, 1))
    return str(value)


def _strategy(method: str, options: dict):
    """The method's strategy with these options, its size left to the budget solver."""
    spec = METHODS[method]
    try:
        return spec.resized(spec.parse({**options, "method": method}), None)
    except (ValidationError, TypeError) as err:
        detail = err.errors()[0]["msg"] if isinstance(err, ValidationError) else str(err)
        raise ValueError(f"{method}: {detail.replace('Value error, ', '')}") from None


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def default_space_file() -> Path:
    """The space shipped with lamina (the paper's full space, K=4, budget 0.5%)."""
    return Path(str(resources.files("lamina.search").joinpath("default_space.yaml")))
