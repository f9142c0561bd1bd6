"""`lamina params`: what a design trains on a model, from its config alone (meta device, no weights)."""

from __future__ import annotations

import json

import typer

from lamina.cli.app import command
from lamina.errors import LaminaError


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
    from lamina.arch import config_from, meta_model

    report = lamina.apply(meta_model(config_from(model), head, num_labels), design, dry_run=True)
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.table())
