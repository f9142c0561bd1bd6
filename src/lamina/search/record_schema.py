"""The shape of a search record (search.json) as `lamina report` reads it, checked before anything is written:
a record edited by hand or cut short is refused with one line naming the file and the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lamina.errors import LaminaError

Number = float  # strict: an int is a number too, a string or a boolean is not


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class Trial(_Loose):
    trial: int
    candidate: Optional[int]
    state: str
    counted: bool
    value: Optional[Number]
    score: Optional[Number] = None
    label: Optional[str]  # None: a joint slot whose sampled point was infeasible (never trained)
    intermediate: Optional[dict[str, Number]] = None
    trainable: Optional[int] = Field(ge=0)
    steps: Optional[int]
    seconds: Optional[Number]


class Side(_Loose):
    n: int
    mean: Optional[Number]
    median: Optional[Number]
    std: Optional[Number]
    trials: list[int]


class ChoiceRow(_Loose):
    choice: str
    trials: list[int]
    n: int
    mean: Optional[Number]
    median: Optional[Number]
    std: Optional[Number]
    min: Optional[Number]
    max: Optional[Number]
    pruned: int
    failed: int


class ItemRow(_Loose):
    item: str
    with_: Side = Field(alias="with")
    without: Side
    difference: Number


class Stage(_Loose):
    index: int
    component: str
    analysis: Literal["choice", "marginal", "tpe", "gates"]  # greedy stages; the joint study; the supernet
    fixed: dict
    fixed_labels: Optional[dict] = None
    trials: list[Trial]
    stats: list[dict]  # rows: ChoiceRow (choice analysis) or ItemRow (marginal), checked in check_record
    notes: list[str] = []
    winner_label: Optional[str]


class Space(_Loose):
    budget: Union[str, int]


class Config(_Loose):
    model: str
    tasks: list[str]
    space: Space
    trials_per_stage: int
    epochs: Number
    max_length: int


class Record(_Loose):
    study: str
    config: Config
    stages: list[Stage]
    final: Optional[dict] = None
    compute: Optional[dict] = None


def _refuse(path, err: ValidationError, prefix: str = ""):
    first = err.errors()[0]
    loc = prefix + ".".join(str(p) for p in first["loc"])
    raise LaminaError(f"{path}: not a complete search record: '{loc}': {first['msg'].lower()}") from None


def check_record(record, path: str | Path) -> None:
    """Refuse a record that `lamina report` could not read, naming the first bad field."""
    if not isinstance(record, dict):
        raise LaminaError(f"{path}: not a search record (expected a JSON object)")
    try:
        Record.model_validate(record)
    except ValidationError as err:
        _refuse(path, err)
    for i, stage in enumerate(record["stages"]):
        for j, row in enumerate(stage["stats"]):
            try:
                (ChoiceRow if "choice" in row else ItemRow).model_validate(row)
            except ValidationError as err:
                _refuse(path, err, f"stages.{i}.stats.{j}.")
    from lamina.search.strategies import MODULES

    strategy = record.get("strategy", record["config"].get("strategy", "greedy"))
    if strategy not in MODULES:
        raise LaminaError(f"{path}: strategy {json.dumps(strategy)[:40]} is not one lamina search writes "
                          f"({', '.join(MODULES)})")
    if record.get("final") is not None and not isinstance(record["final"].get("label"), str):
        raise LaminaError(f"{path}: not a complete search record: 'final.label' is missing")
