"""`lamina train / eval / predict` for seq2seq and sft on tiny models; bad data is one line naming file,
line and field, exit code 2, and nothing is written."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import tiny_lm
from lamina.cli import app
from test_train_cli import one_line_error

runner = CliRunner()
FAST = ["--epochs", "1", "--batch-size", "8", "--max-length", "48", "--no-progress"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen-cli")
    return {f: tiny_lm.lm_dir(root, f) for f in ("t5", "gpt2")}


def test_seq2seq_folder_train_eval_predict(models, tmp_path):
    data = tiny_lm.write_seq2seq(tmp_path / "data", n_train=16, n_dev=4)
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--task", "seq2seq", "--model", models["t5"], "--data-dir", str(data),
                                 "--design", "lora", "--output", str(out), "--num-beams", "2", *FAST])
    assert result.exit_code == 0, result.output
    assert "seq2seq: best rougeL" in result.output and "bleu" in result.output
    saved = json.loads((out / "results.json").read_text())
    assert saved["options"]["num_beams"] == 2 and saved["kind"] == "seq2seq"
    result = runner.invoke(app, ["eval", "--adapter", str(out), "--task", "seq2seq", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["metrics"]["rougeL"] == pytest.approx(saved["best"]["rougeL"])
    inputs = tiny_lm.write_jsonl(tmp_path / "in.jsonl", [{"source": "one two film"}, {"source": "three", "id": "t"}])
    result = runner.invoke(app, ["predict", "--adapter", str(out), "--input", str(inputs), "--max-new-tokens", "3"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in rows] == ["0", "t"] and all("generation" in r for r in rows)


def test_sft_explicit_files_train_and_predict(models, tmp_path):
    data = tiny_lm.write_sft(tmp_path / "data", n_train=16, n_dev=4)
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--task", "sft", "--model", models["gpt2"], "--train-file",
                                 str(data / "train.jsonl"), "--dev-file", str(data / "dev.jsonl"), "--design",
                                 "prefix", "--output", str(out), *FAST])
    assert result.exit_code == 0, result.output
    assert "sft: best rougeL" in result.output and "perplexity" in result.output
    preds = tmp_path / "preds.jsonl"
    inputs = tiny_lm.write_jsonl(tmp_path / "in.jsonl", [{"prompt": "question: one film answer:"}])
    result = runner.invoke(app, ["predict", "--adapter", str(out), "--input", str(inputs), "--output", str(preds)])
    assert result.exit_code == 0, result.output
    assert "1 predictions written" in result.output and "generation" in json.loads(preds.read_text())
    result = runner.invoke(app, ["eval", "--adapter", str(out), "--task", "sft", "--dev-file", str(data / "train.jsonl"),
                                 "--limit", "4"])
    assert result.exit_code == 0 and "sft validation (4 examples): exact_match" in result.output


@pytest.mark.parametrize("task, rows, message", [
    ("seq2seq", [{"source": "one", "target": "two"}, {"source": "three"}], "train.jsonl:2: missing field 'target'"),
    ("sft", [{"prompt": "one", "response": ""}], "train.jsonl:1: field 'response' is empty"),
    ("sft", [{"prompt": "a", "response": "b"}, {"messages": [{"role": "user", "content": "one"}]}],
     "train.jsonl:2: field 'messages': no assistant turn to train on"),
    ("sft", [{"prompt": "one", "response": " ".join(["two"] * 70)}],
     "train.jsonl:1: field 'response': 72 tokens with the prompt, more than the model's context of 64"),
])
def test_bad_data_is_one_line_exit_2_and_nothing_written(models, tmp_path, task, rows, message):
    data = tmp_path / "data"
    tiny_lm.write_jsonl(data / "train.jsonl", rows)
    tiny_lm.write_jsonl(data / "dev.jsonl", [{"source": "a", "target": "b", "prompt": "a", "response": "b"}])
    model = models["t5" if task == "seq2seq" else "gpt2"]
    out = tmp_path / "run"
    line = one_line_error(runner.invoke(app, ["train", "--task", task, "--model", model, "--data-dir", str(data),
                                              "--output", str(out), "--max-length", "64", "--no-progress"]))
    assert line == f"error: {data}/{message}"
    assert not out.exists()


def test_bad_predict_input_writes_nothing(models, tmp_path):
    data = tiny_lm.write_sft(tmp_path / "data", n_train=8, n_dev=2)
    out = tmp_path / "run"
    assert runner.invoke(app, ["train", "--task", "sft", "--model", models["gpt2"], "--data-dir", str(data),
                               "--design", "bitfit", "--output", str(out), *FAST]).exit_code == 0
    bad = tiny_lm.write_jsonl(tmp_path / "in.jsonl", [{"prompt": "one"}, {"text": "no prompt"}])
    preds = tmp_path / "preds.jsonl"
    line = one_line_error(runner.invoke(app, ["predict", "--adapter", str(out), "--input", str(bad),
                                              "--output", str(preds)]))
    assert line == f"error: {bad}:2: missing field 'prompt'" and not preds.exists()
    line = one_line_error(runner.invoke(app, ["train", "--task", "sft", "--model", models["gpt2"], "--data-dir",
                                              str(data), "--train-file", str(data / "train.jsonl")]))
    assert "not both" in line


@pytest.mark.slow  # a fresh process that reads the whole SQuAD dev file and trains two tokenizers
def test_the_documented_example_data_and_models(shared_data, tmp_path):
    """examples/make_tiny_generation.py (docs/generation.md): SQuAD split by article into seq2seq and sft
    files that lamina reads, and two tiny models whose tokenizers round-trip the text."""
    import subprocess
    import sys
    from pathlib import Path

    from lamina.tasks import get_kind
    from test_train import subprocess_env

    script = Path(__file__).resolve().parents[1] / "examples" / "make_tiny_generation.py"
    out = tmp_path / "gen"
    done = subprocess.run([sys.executable, str(script), "--squad", str(shared_data / "squad" / "dev-v1.1.json"),
                           "--out", str(out), "--train-articles", "1", "--dev-articles", "1", "--vocab", "400"],
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    seq2seq, sft = get_kind("seq2seq"), get_kind("sft")
    pairs = seq2seq.load_split(seq2seq.spec_from_data(out / "squad-seq2seq"), out / "squad-seq2seq", "train")[0]
    chats = sft.load_split(sft.spec_from_data(out / "squad-sft"), out / "squad-sft", "validation")[0]
    assert pairs[0]["source"].startswith("question: ") and " context: " in pairs[0]["source"] and pairs[0]["target"]
    assert chats[0]["prompt"].endswith("\nAnswer:") and chats[0]["response"].startswith(" ")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out / "tiny-llama")
    assert tok.decode(tok(chats[0]["prompt"])["input_ids"], skip_special_tokens=True) == chats[0]["prompt"]
    assert f"{len(pairs)} train / " in done.stdout


def test_a_kind_on_a_model_it_cannot_use_is_one_line(models, tmp_path):
    data = tiny_lm.write_sft(tmp_path / "data", n_train=4, n_dev=2)
    line = one_line_error(runner.invoke(app, ["train", "--task", "sft", "--model", models["t5"], "--data-dir",
                                              str(data), "--output", str(tmp_path / "run"), "--no-progress"]))
    assert line == ("error: task 'sft' is sft: it needs a model AutoModelForCausalLM can build, and t5 models "
                    "are not among them")
    assert not (tmp_path / "run").exists()
