"""`lamina train / eval / predict / demo` on a tiny model; user errors -> one line naming file/line/column, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lamina.cli import app
from test_train import make_model_dir, write_sst2

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return make_model_dir(root), write_sst2(root, n_train=48, n_dev=16)


def one_line_error(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def sst2_dir(tmp_path: Path, train_lines: list[str], dev_lines: list[str] | None = None) -> Path:
    folder = tmp_path / "glue" / "SST-2"
    folder.mkdir(parents=True)
    (folder / "train.tsv").write_text("\n".join(train_lines) + "\n")
    (folder / "dev.tsv").write_text("\n".join(dev_lines or ["sentence\tlabel", "good film \t1"]) + "\n")
    return tmp_path / "glue"


def train_args(model, data, out, *extra):
    return ["train", "--model", model, "--task", "sst2", "--design", "bitfit", "--data-dir", str(data),
            "--output", str(out), "--no-progress", *extra]


def test_user_errors_are_one_line(tiny, tmp_path):
    model, data = tiny
    msg = one_line_error(runner.invoke(app, ["train", "-m", model, "-t", "sst3", "--data-dir", str(data)]))
    assert "unknown task 'sst3'" in msg and "sst2" in msg

    msg = one_line_error(runner.invoke(app, train_args(model, tmp_path / "nowhere", tmp_path / "o")))
    assert "nowhere" in msg and "not found" in msg

    msg = one_line_error(runner.invoke(app, ["train", "--model", model, "--task", "mrpc", "--no-progress"]))
    assert "--data-dir" in msg

    bad_column = sst2_dir(tmp_path / "a", ["sentence\tlabels", "good film \t1"])
    msg = one_line_error(runner.invoke(app, train_args(model, bad_column, tmp_path / "o")))
    assert "train.tsv:1" in msg and "'label'" in msg

    empty = sst2_dir(tmp_path / "b", ["sentence\tlabel"])
    msg = one_line_error(runner.invoke(app, train_args(model, empty, tmp_path / "o")))
    assert "train.tsv" in msg and "empty" in msg

    bad_label = sst2_dir(tmp_path / "c", ["sentence\tlabel", "good film \t1", "bad film \t2"])
    msg = one_line_error(runner.invoke(app, train_args(model, bad_label, tmp_path / "o")))
    assert "train.tsv:3" in msg and "column 'label'" in msg and "'2'" in msg

    text = tmp_path / "text"
    text.mkdir()
    (text / "train.jsonl").write_text('{"text": "a", "label": "x"}\n{"txt": "b", "label": "y"}\n')
    (text / "dev.jsonl").write_text('{"text": "a", "label": "x"}\n')
    msg = one_line_error(runner.invoke(app, ["train", "-m", model, "-t", "text", "--data-dir", str(text),
                                             "-o", str(tmp_path / "o"), "--no-progress"]))
    assert "train.jsonl:2" in msg and "'text'" in msg

    msg = one_line_error(runner.invoke(app, train_args(model, data, tmp_path / "o", "--lr", "-1")))
    assert "lr" in msg
    msg = one_line_error(runner.invoke(app, ["train", "-m", model, "-t", "sst2", "-d", "spafit:n1=9",
                                             "-o", str(tmp_path / "o"), "--no-progress"]))
    assert "spafit" in msg
    msg = one_line_error(runner.invoke(app, ["eval", "--adapter", str(tmp_path / "missing"), "--task", "sst2"]))
    assert "missing" in msg


def test_train_eval_predict_round_trip(tiny, tmp_path):
    model, data = tiny
    out = tmp_path / "run"
    result = runner.invoke(app, train_args(model, data, out, "--epochs", "1", "--batch-size", "16",
                                           "--max-length", "32", "--lr", "1e-2", "--seed", "3"))
    assert result.exit_code == 0, result.output
    assert "best accuracy" in result.output and str(out) in result.output
    saved = json.loads((out / "results.json").read_text())
    assert saved["seed"] == 3 and saved["options"]["lr"] == 1e-2 and saved["options"]["max_length"] == 32
    assert (out / "design.json").is_file() and (out / "adapter.safetensors").is_file()
    assert not (out / "checkpoints").exists()  # removed once the run has finished

    result = runner.invoke(app, ["eval", "--adapter", str(out), "--task", "sst2", "--json"])
    assert result.exit_code == 0, result.output
    scored = json.loads(result.stdout)
    assert scored["metrics"]["accuracy"] == pytest.approx(saved["best"]["accuracy"])  # data dir taken from the run
    result = runner.invoke(app, ["eval", "--adapter", str(out), "--task", "sst2", "--data-dir", str(data),
                                 "--split", "train", "--limit", "5"])
    assert result.exit_code == 0 and "sst2 train (5 examples): accuracy" in result.output
    result = runner.invoke(app, ["eval", "--adapter", str(out), "--task", "stsb", "--data-dir", str(data)])
    assert "regression" in one_line_error(result) or "output" in result.stderr

    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"text": "good film"}\n{"text": "bad plot", "id": "x"}\n')
    preds = tmp_path / "preds.jsonl"
    result = runner.invoke(app, ["predict", "--adapter", str(out), "--input", str(inputs), "--output", str(preds)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["0", "x"]
    assert all(r["label"] in ("negative", "positive") and 0.5 <= r["score"] <= 1 for r in rows)

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"sentence": "no text field"}\n')
    msg = one_line_error(runner.invoke(app, ["predict", "--adapter", str(out), "--input", str(bad)]))
    assert "bad.jsonl:2" in msg and "'text'" in msg


def test_help_texts():
    for command in ("train", "eval", "predict", "demo"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0
        assert "--help" in result.output
    result = runner.invoke(app, ["train", "--help"])
    for flag in ("--model", "--task", "--design", "--data-dir", "--output", "--lr", "--epochs", "--batch-size",
                 "--max-length", "--seed", "--train-limit", "--eval-limit", "--resume"):
        assert flag in result.output
