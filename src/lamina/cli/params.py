"""`lamina params`: what a design trains on a model, from its config alone (meta device, no weights)."""

from __future__ import annotations

import json

import typer

from lamina.cli.app import command
from lamina.errors import LaminaError

MAX_LABELS = 100_000


def head_model(config, head: str = "classification", num_labels: int = 2):
    """The meta-device skeleton `lamina params` counts: the model class of task kind `head` (recast for
    the model as training would: classification on T5 counts T5 as text-to-text), or the backbone."""
    from lamina.arch import meta_model
    from lamina.evaluate import meta_model_for
    from lamina.tasks import get_kind

    if head == "none":
        return meta_model(config, "none")
    return meta_model_for(get_kind(head).placeholder_spec(num_labels), config)


@command("params")
def params(
    model: str = typer.Option(..., "--model", "-m", help="HF model id, local model folder, or config.json"),
    design: str = typer.Option(..., "--design", "-d", help="preset string (e.g. 'spafit:n1=8,n2=16') or design file"),
    head: str = typer.Option("classification", help="task kind whose model to count (classification, regression, qa, "
                                                    "seq2seq, sft, ...) or 'none' for the backbone alone"),
    num_labels: int = typer.Option(2, help="labels of the classification head"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
):
    """Count trainable and stored parameters per group and method (no weights are loaded)."""
    import lamina
    from lamina.tasks import kinds

    if head != "none" and head not in kinds():
        raise LaminaError(f"--head must be one of {', '.join([*kinds(), 'none'])}, not '{head}'")
    if not 1 <= num_labels <= MAX_LABELS:  # the config lists every label by name: 1e11 of them never finish
        raise LaminaError(f"--num-labels must be between 1 (a regression head) and {MAX_LABELS:,} (a classification "
                          f"head), got {num_labels:,}")
    from lamina.checks import design_argument, model_config, naming_design_file

    design_argument(design)
    skeleton = head_model(model_config(model), head, num_labels)
    with naming_design_file(design):
        report = lamina.apply(skeleton, design, dry_run=True)
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.table())
