"""The settings of a search: everything that defines its results (a worker joining a study must bring the
same; the root study stores them and refuses others)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields

from lamina.errors import LaminaError
from lamina.search.space import SearchSpace

STRATEGIES = ("greedy", "joint", "one-shot")
PRUNERS = ("asha", "hyperband")


@dataclass(frozen=True)
class SearchConfig:
    """Training settings shared by every trial (and by the final training), plus the strategy's own.

    - greedy: `trials_per_stage` designs per component, four stages (Chen et al. 2023);
    - joint: `trials` designs in one study, sampled by TPE over all components at once (warm-started with
      `lamina suggest`'s designs when `warm_start`), pruned by `pruner` when `prune`;
    - one-shot: one supernet training (every candidate in every layer behind an architecture gate, a
      budget `penalty`, gate learning rate `alpha_lr`; default 4 / the supernet's steps, so a gate can
      cross from 0.02 to 0.98 within the training), pruned to a design.
    Every strategy ends with one training of its final design under the same settings (`final`)."""

    model: str
    tasks: tuple[str, ...]
    space: SearchSpace
    data: tuple[str | None, ...] = ()
    trials_per_stage: int = 8
    epochs: float = 1.0
    train_limit: int | None = None
    eval_limit: int | None = None
    max_length: int = 128
    batch_size: int = 32
    lr: float | None = None
    seed: int = 42
    eval_steps: int | None = None
    prune: bool = False
    reduction_factor: int = 2
    strategy: str = "greedy"  # settings stored before strategies existed are greedy; the CLI defaults to one-shot
    trials: int = 12
    pruner: str = "asha"
    warm_start: bool = True
    startup_trials: int | None = None
    penalty: float = 2.0
    alpha_lr: float | None = None

    def __post_init__(self):
        if not self.tasks:
            raise LaminaError("name at least one task")
        if self.data and len(self.data) not in (1, len(self.tasks)):
            raise LaminaError(f"--data-dir: give one data folder for all tasks or one per --task ({len(self.tasks)}), "
                              f"not {len(self.data)}")
        if self.strategy not in STRATEGIES:
            raise LaminaError(f"unknown strategy '{self.strategy}' (known: {', '.join(STRATEGIES)})")
        if self.pruner not in PRUNERS:
            raise LaminaError(f"unknown pruner '{self.pruner}' (known: {', '.join(PRUNERS)})")
        if self.trials_per_stage < 1:
            raise LaminaError(f"trials per stage must be >= 1, got {self.trials_per_stage}")
        if self.trials < 1:
            raise LaminaError(f"trials must be >= 1, got {self.trials}")
        if self.reduction_factor < 2:
            raise LaminaError(f"reduction factor must be >= 2, got {self.reduction_factor}")
        for flag, value in (("--penalty", self.penalty), ("--alpha-lr", self.alpha_lr)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise LaminaError(f"{flag} must be a positive finite number, got {value}")
        if self.startup_trials is not None and self.startup_trials < 0:
            raise LaminaError(f"startup trials must be >= 0, got {self.startup_trials}")

    def data_for(self, i: int) -> str | None:
        if not self.data:
            return None
        return self.data[0] if len(self.data) == 1 else self.data[i]

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["space"] = self.space.to_dict()
        out["tasks"], out["data"] = list(self.tasks), list(self.data)
        return json.loads(json.dumps(out))

    @classmethod
    def from_dict(cls, data: dict) -> "SearchConfig":
        data = dict(data)
        data["space"] = SearchSpace.from_dict(data["space"])
        data["tasks"], data["data"] = tuple(data["tasks"]), tuple(data.get("data") or ())
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
