"""`lamina params`: what a design trains on a model, from its config alone (meta device, no weights)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from lamina.cli import command
from lamina.errors import LaminaError


def config_from(model: str):
    """An HF config from a hub id, a local model folder, or a config.json file."""
    from transformers import AutoConfig

    path = Path(model)
    if path.suffix == ".json":
        if not path.is_file():
            raise LaminaError(f"config file not found: {path}")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise LaminaError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None
        if "model_type" not in data:
            raise LaminaError(f"{path}: no 'model_type' field")
        return AutoConfig.for_model(**data)
    try:
        return AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as err:
        raise LaminaError(f"cannot load a config from '{model}': {str(err).splitlines()[0]}") from None


def meta_model(config, head: str = "classification", num_labels: int = 2):
    """The model skeleton on the meta device: shapes only, so a 70B config answers in about a second."""
    import torch
    import transformers as T

    from lamina.arch import family_of

    family_of(config)  # unsupported model types fail here with the list of supported ones
    with torch.device("meta"):
        if config.model_type in ("t5", "mt5"):
            return T.AutoModelForSeq2SeqLM.from_config(config)
        if head == "none":
            return T.AutoModel.from_config(config)
        config.num_labels = num_labels
        cls = T.AutoModelForQuestionAnswering if head == "qa" else T.AutoModelForSequenceClassification
        return cls.from_config(config)


@command("params")
def params(
    model: str = typer.Option(..., "--model", "-m", help="HF model id, local model folder, or config.json"),
    design: str = typer.Option(..., "--design", "-d", help="preset string (e.g. 'spafit:n1=8,n2=16') or design file"),
    head: str = typer.Option("classification", help="task head to count: classification | qa | none"),
    num_labels: int = typer.Option(2, help="labels of the classification head"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
):
    """Count trainable and stored parameters per group and method (no weights are loaded)."""
    import lamina

    if head not in ("classification", "qa", "none"):
        raise LaminaError(f"--head must be classification, qa or none, not '{head}'")
    report = lamina.apply(meta_model(config_from(model), head, num_labels), design, dry_run=True)
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.table())
