"""`lamina train --report-to tensorboard`: the run's curves, read back with TensorBoard's own event reader;
the other integrations by name, unknown or uninstalled ones refused before anything is written."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lamina.cli import app
from test_train import make_model_dir, write_sst2

runner = CliRunner()


def train_args(tmp_path, out, *extra):
    model, data = make_model_dir(tmp_path), write_sst2(tmp_path, n_train=32, n_dev=8)
    return ["train", "--model", model, "--task", "sst2", "--design", "bitfit", "--data-dir", str(data),
            "--output", str(out), "--no-progress", "--epochs", "2", "--batch-size", "4", "--max-length", "16", *extra]


def test_tensorboard_curves_are_readable_by_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    result = runner.invoke(app, train_args(tmp_path, out, "--report-to", "tensorboard"))
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["tensorboard_dir"] == str(out / "tensorboard") and results["options"]["report_to"] == ["tensorboard"]
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train/loss", "eval/accuracy", "train/learning_rate"} <= set(tags), tags
    assert [e.step for e in events.Scalars("train/loss")] == [10]  # logged every 10 steps
    accuracy = events.Scalars("eval/accuracy")
    assert [e.step for e in accuracy] == [8, 16]  # one evaluation per epoch: 32 rows / batch 4
    assert [round(e.value, 6) for e in accuracy] == [round(r["accuracy"], 6) for r in results["evaluations"]]
    assert not (out / "checkpoints").exists()  # the curves live outside the (removed) checkpoints folder


@pytest.mark.parametrize("name, words", [("carrier-pigeon", "unknown integration"),
                                         ("neptune", "package is not installed"),
                                         ("none,tensorboard", "'none' stands alone")])
def test_unknown_or_missing_integrations_are_refused_before_anything_is_written(tmp_path, name, words):
    out = tmp_path / "run"
    result = runner.invoke(app, train_args(tmp_path, out, "--report-to", name))
    assert result.exit_code == 2 and words in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()
