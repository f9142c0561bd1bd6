"""`lamina train`, `lamina eval`, `lamina predict` and `lamina demo`.

Multi-process: `accelerate launch --num_processes N [--multi_gpu] -m lamina.cli train ...` (DDP; on a
machine without GPUs each process trains on the CPU over gloo). Only the main process prints and writes
files. Note that in accelerate 1.x `--cpu --num_processes 2` starts a single process; `--multi_gpu
--num_processes 2` with no visible GPU gives two CPU processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

import typer

from lamina.cli.app import command
from lamina.errors import LaminaError

# The design that scored best on SST-2 at the budget benchmark's budget (docs/benchmarks/budget-gpu/budget.md:
# LoRA 82.2 +- 0.4 at 0.5 % without the head, at the LR its training-data sweep chose).
DEMO = dict(design="lora:budget=0.5%", lr=3e-3, epochs=3, batch_size=32, max_length=64, seed=42)


def _quiet_transformers(bars: bool = True) -> None:
    """Only transformers' errors; its own progress bars (weight loading) only where asked for."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    if not bars:
        hf_logging.disable_progress_bar()


def _passive_openmp(command: str) -> None:
    """Restart this command once with OMP_WAIT_POLICY=PASSIVE when it is unset. torch's OpenMP threads
    otherwise spin while they wait, and on a busy 2-core machine those spinning threads steal the CPU
    from the ones doing work: the demo measured 753 s at load 5 without it, 401 s at load 9-13 with it
    (same numbers: the policy only changes how idle threads wait). It must be set before torch loads,
    hence the restart. Only for a real `lamina <command>` process, never inside a test runner."""
    if os.environ.get("OMP_WAIT_POLICY") or sys.argv[1:2] != [command]:
        return
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "lamina.cli", *sys.argv[1:]], env)


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _summary(results: dict) -> str:
    best = results["best"]
    metric = results["main_metric"]
    others = ", ".join(f"{k} {v:.4f}" for k, v in best.items() if k not in (metric, "loss", "runtime")
                       and not k.endswith("_per_second"))
    where = f"epoch {results['best_epoch']:g}" if results.get("best_epoch") is not None else "end of training"
    return (f"{results['task']}: best {metric} {best[metric]:.4f} ({where}"
            f"{'; ' + others if others else ''})\n"
            f"trainable {results['trainable_params']:,} of {results['base_params']:,} parameters "
            f"({results['trainable_percent']:.3f}%; {results['trainable_percent_without_head']:.3f}% without the "
            f"task head), stored {results['stored_params']:,}\n"
            f"train time {results['train_time_s']:.1f} s, peak memory {results['peak_memory_mb']:.0f} MB\n"
            f"adapter, results.json and train.log: {results['adapter_dir']}")


def _data(data_dir, train_file, dev_file):
    """--data-dir, or --train-file / --dev-file as {split: file}."""
    if train_file is None and dev_file is None:
        return data_dir
    if data_dir is not None:
        raise LaminaError("give --data-dir or --train-file/--dev-file, not both")
    return {"train": train_file, "validation": dev_file}


@command("train")
def train_cmd(
    task: str = typer.Option(..., "--task", "-t", help="GLUE task (sst2, mrpc, stsb, ...), squad, a domain preset, "
                                                        "or your own train/dev .jsonl/.csv files: 'text' "
                                                        "(classification), 'seq2seq' (source/target), 'sft' "
                                                        "(prompt/response or messages)"),
    design: str = typer.Option("spafit", "--design", "-d", help="preset string (e.g. 'spafit:n1=2,n2=4', "
                                                               "'lora:r=8', 'full') or a design .yaml/.json file"),
    model: str = typer.Option(None, "--model", "-m", help="HF model id or local folder [default: the installed "
                                                         "all-MiniLM-L6-v2 wheel]"),
    data_dir: Path = typer.Option(None, "--data-dir", help="data folder (GLUE root or task folder, SQuAD folder, "
                                                           "a folder with train and dev files) [default for sst2: "
                                                           "the bundled sample]"),
    train_file: Path = typer.Option(None, "--train-file", help="training file (instead of --data-dir; with --dev-file)"),
    dev_file: Path = typer.Option(None, "--dev-file", help="validation file (instead of --data-dir; with --train-file)"),
    output: Path = typer.Option(None, "--output", "-o", help="run folder [default: runs/<task>-<design>]"),
    lr: float = typer.Option(None, "--lr", help="peak learning rate [default: 1e-3 for PEFT designs, 2e-5 for full]"),
    epochs: float = typer.Option(3.0, "--epochs", help="training epochs (at most 100,000)"),
    batch_size: int = typer.Option(32, "--batch-size", help="examples per step and process"),
    max_length: int = typer.Option(None, "--max-length", help="max tokens per example (SQuAD: per window) "
                                                               "[default: 128, or the model's positions if fewer]"),
    seed: int = typer.Option(42, "--seed", help="seed for init, data order and dropout"),
    train_limit: int = typer.Option(None, "--train-limit", help="use only the first N training examples"),
    eval_limit: int = typer.Option(None, "--eval-limit", help="use only the first N validation examples"),
    warmup_ratio: float = typer.Option(0.06, "--warmup-ratio", help="linear warmup, fraction of all steps"),
    weight_decay: float = typer.Option(0.0, "--weight-decay", help="AdamW weight decay"),
    eval_steps: int = typer.Option(None, "--eval-steps", help="evaluate and checkpoint every N steps "
                                                               "[default: every epoch]"),
    max_steps: int = typer.Option(None, "--max-steps", help="stop after N optimizer steps"),
    resume: bool = typer.Option(False, "--resume", help="continue from the last complete checkpoint in the run "
                                                        "folder (e.g. after a crash or kill)"),
    keep_checkpoints: bool = typer.Option(False, "--keep-checkpoints", help="keep <output>/checkpoints after a "
                                                                            "finished run"),
    label_mean_init: bool = typer.Option(True, "--label-mean-init/--no-label-mean-init",
                                         help="regression tasks: start the head's output bias at the mean "
                                              "training label"),
    gradient_checkpointing: bool = typer.Option(False, "--gradient-checkpointing",
                                                help="recompute block activations in backward: less memory, more time"),
    precision: str = typer.Option("fp32", "--precision", help="fp32 | bf16 (autocast; CPU too) | fp16 (CUDA only); "
                                                             "adapter tensors stay float32"),
    max_new_tokens: int = typer.Option(None, "--max-new-tokens", help="generation tasks: most tokens generated "
                                                                      "per example, at most 65,536 [default: the longest "
                                                                      "training target]"),
    num_beams: int = typer.Option(1, "--num-beams", help="generation tasks: beam search width (1 = greedy; at most 128)"),
    report_to: list[str] = typer.Option(None, "--report-to", help="log the run's curves with the Trainer's "
                                        "integrations, by name: tensorboard (into <output>/tensorboard), wandb, "
                                        "mlflow, comet_ml, ... (repeat, or comma-separate)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="train again into an existing run folder "
                                                              "(replaces the earlier run)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show progress bars"),
    as_json: bool = typer.Option(False, "--json", help="print results.json instead of a summary"),
):
    """Fine-tune a design on a task: evaluates every epoch, keeps the best checkpoint by the task's
    main metric, and writes the adapter, results.json and train.log to the run folder."""
    _quiet_transformers()
    from lamina.evaluate import default_model
    from lamina.train import train

    model = model or default_model()
    data = _data(data_dir, train_file, dev_file)
    if output is None:
        output = Path("runs") / f"{task}-{Path(design).stem if design.endswith(('.yaml', '.yml', '.json')) else design.split(':')[0]}"
    if resume and overwrite:
        raise LaminaError("--resume continues a run and --overwrite starts it again: give one of them")
    from lamina.outputs import check_output_folder
    from lamina.reporting import check as check_report_to

    report_to = check_report_to(report_to)
    if _is_main():
        if _finished(output, resume, as_json):
            return
        check_output_folder(output, "run", inputs=(model, data_dir, train_file, dev_file, design), overwrite=overwrite,
                            resume=resume)
    # with --json, stdout carries only the results: the Trainer's log lines go to stderr meanwhile
    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        results = train(model, task, design, data, output, lr=lr, epochs=epochs, batch_size=batch_size,
                        max_length=max_length, seed=seed, train_limit=train_limit, eval_limit=eval_limit,
                        warmup_ratio=warmup_ratio, weight_decay=weight_decay, eval_steps=eval_steps,
                        max_steps=max_steps, resume=resume, keep_checkpoints=keep_checkpoints, progress=progress,
                        label_mean_init=label_mean_init, gradient_checkpointing=gradient_checkpointing,
                        precision=precision, max_new_tokens=max_new_tokens, num_beams=num_beams, report_to=report_to)
    if _is_main():
        typer.echo(json.dumps(results, indent=2, default=str) if as_json else _summary(results))


def _finished(output: Path, resume: bool, as_json: bool) -> bool:
    """`--resume` on a run that has finished (results.json written): say so, change nothing."""
    results = output / "results.json"
    if not (resume and results.is_file()):
        return False
    from lamina.checks import read_json_object

    saved = read_json_object(results, "run results")
    if as_json:
        typer.echo(json.dumps(saved, indent=2))
        return True
    metric, best = saved.get("main_metric"), saved.get("main_score")
    score = f" (best {metric} {best:.4f})" if isinstance(best, (int, float)) and metric else ""
    typer.echo(f"{output}: this run has already finished{score}; nothing to resume. "
               "Use --overwrite to train it again.")
    return True


def _at_least_one(*flags) -> None:
    """Count flags that were given must be >= 1, whatever the task (a generation flag given to a classifier is
    unused, but a 0 there is still a mistake to point out)."""
    from lamina.checks import at_most

    for flag, value in flags:
        if value is not None and value < 1:
            raise LaminaError(f"{flag} must be >= 1, got {value}")
        at_most(flag, value)


@command("eval")
def eval_cmd(
    adapter: Path = typer.Option(..., "--adapter", "-a", help="adapter folder (design.json + adapter.safetensors)"),
    task: str = typer.Option(..., "--task", "-t", help="task to score on (as for train)"),
    data_dir: Path = typer.Option(None, "--data-dir", help="data folder [default: the run's data, or the bundled "
                                                           "sample for sst2]"),
    dev_file: Path = typer.Option(None, "--dev-file", help="score this file (instead of --data-dir)"),
    split: str = typer.Option("validation", "--split", help="split to score: validation (dev), train or test"),
    model: str = typer.Option(None, "--model", "-m", help="base model [default: the one named in design.json]"),
    limit: int = typer.Option(None, "--limit", help="score only the first N examples"),
    max_length: int = typer.Option(None, "--max-length", help="[default: the run's max length, else 128]"),
    max_new_tokens: int = typer.Option(None, "--max-new-tokens", help="generation tasks, at most 65,536 [default: the run's]"),
    num_beams: int = typer.Option(None, "--num-beams", help="generation tasks, at most 128 [default: the run's, else 1]"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
):
    """Score a saved adapter on a task split (loads its base model, then lamina.load)."""
    _quiet_transformers(bars=False)
    from lamina.evaluate import evaluate_adapter

    _at_least_one(("--limit", limit), ("--max-new-tokens", max_new_tokens), ("--num-beams", num_beams))
    if dev_file is not None:
        if data_dir is not None:
            raise LaminaError("give --data-dir or --dev-file, not both")
        data_dir = {split: dev_file}
    out = evaluate_adapter(adapter, task, data_dir, split, model=model, limit=limit, max_length=max_length,
                           max_new_tokens=max_new_tokens, num_beams=num_beams)
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in out["metrics"].items())
    typer.echo(f"{out['task']} {out['split']} ({out['examples']} examples): {metrics}")
    if out["note"]:
        typer.echo(f"note: {out['note']}")


@command("predict")
def predict_cmd(
    adapter: Path = typer.Option(..., "--adapter", "-a", help="adapter folder of a run"),
    input_path: Path = typer.Option(..., "--input", "-i", help=".jsonl (or .csv), one input per line: 'text' "
                                                         "(+ 'text_pair') for classification/regression, "
                                                         "'question' + 'context' for QA, 'source' for "
                                                         "seq2seq, 'prompt' or 'messages' for sft; optional 'id'"),
    output: Path = typer.Option(None, "--output", "-o", help="write predictions here as JSON lines "
                                                            "[default: print them]"),
    model: str = typer.Option(None, "--model", "-m", help="base model [default: the one named in design.json]"),
    task: str = typer.Option(None, "--task", "-t", help="task the adapter serves [default: the run's task, else "
                                                         "the kind its model class is for]"),
    max_length: int = typer.Option(None, "--max-length", help="[default: the run's max length, else 128]"),
    max_new_tokens: int = typer.Option(None, "--max-new-tokens", help="generation tasks, at most 65,536 [default: the run's]"),
    num_beams: int = typer.Option(None, "--num-beams", help="generation tasks, at most 128 [default: the run's, else 1]"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --output file"),
):
    """Predict for every input line: a label and its probability, a score, an answer span, or a generation
    (what the task's kind writes)."""
    _quiet_transformers(bars=False)
    from lamina.evaluate import predict_file
    from lamina.outputs import check_output_file

    _at_least_one(("--max-length", max_length), ("--max-new-tokens", max_new_tokens), ("--num-beams", num_beams))
    if output is not None:
        check_output_file(output, inputs=(input_path, adapter, model), overwrite=overwrite)

    rows = predict_file(adapter, input_path, output, model=model, task=task, max_length=max_length,
                        max_new_tokens=max_new_tokens, num_beams=num_beams)
    if output is None:
        for row in rows:
            typer.echo(json.dumps(row))
    else:
        typer.echo(f"{len(rows)} predictions written to {output}")


@command("demo")
def demo_cmd(
    output: Path = typer.Option(Path("runs/demo"), "--output", "-o", help="run folder"),
    epochs: float = typer.Option(DEMO["epochs"], "--epochs", help="training epochs"),
    lr: float = typer.Option(DEMO["lr"], "--lr", help="peak learning rate"),
    train_limit: int = typer.Option(None, "--train-limit", help="use only the first N of the 2,000 training rows"),
    overwrite: bool = typer.Option(False, "--overwrite", help="run again into an existing demo folder"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show progress bars"),
):
    """Fine-tune all-MiniLM-L6-v2 with LoRA sized to 0.5 % of the base (the budget benchmark's best design on
    SST-2 at that budget) on the bundled SST-2 sample (2,000 train / 872 dev sentences); report dev accuracy."""
    _passive_openmp("demo")
    _quiet_transformers()
    from lamina.evaluate import default_model
    from lamina.train import train

    from lamina.outputs import check_output_folder
    from lamina.train import _check_options

    _check_options(epochs=epochs, lr=lr, train_limit=train_limit)  # before the banner line: a refusal stays one line
    if _is_main():
        check_output_folder(output, "run", overwrite=overwrite)
    model = default_model()
    typer.echo(f"lamina demo: {DEMO['design']} on all-MiniLM-L6-v2, bundled SST-2 sample "
               f"({epochs:g} epochs, lr {lr:g}, max length {DEMO['max_length']}) ...")
    started = time.time()
    results = train(model, "sst2", DEMO["design"], None, output, lr=lr, epochs=epochs,
                    batch_size=DEMO["batch_size"], max_length=DEMO["max_length"], seed=DEMO["seed"],
                    train_limit=train_limit, progress=progress)
    if not _is_main():
        return
    best = results["best"]["accuracy"]
    typer.echo(_summary(results))
    typer.echo(f"dev accuracy {100 * best:.1f}% (majority class: 50.9%) with {results['trainable_percent']:.2f}% of "
               f"the parameters trained, {time.time() - started:.0f} s in all")
    typer.echo(f"next: lamina eval --adapter {output} --task sst2   |   "
               f"lamina predict --adapter {output} --input my.jsonl")
