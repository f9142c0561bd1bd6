"""Smoke test of the quality and low-resource benchmark scripts on a tiny random BERT (no downloads),
so they cannot rot; also: the same row with the same seed gives the same score (determinism)."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

WORDS = "good great fine nice bad awful poor dull movie film plot actor story the a is was very not".split()
POSITIVE, NEGATIVE = WORDS[:4], WORDS[4:8]


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    import transformers as T

    root = tmp_path_factory.mktemp("bench")
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tok = T.BertTokenizerFast(vocab=str(vocab))
    model_dir = root / "tiny-bert"
    T.set_seed(0)
    cfg = T.BertConfig(vocab_size=len(tok.get_vocab()), hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                       intermediate_size=37, max_position_embeddings=64)
    T.BertForSequenceClassification(cfg).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    rng = random.Random(0)
    glue = root / "glue"
    (glue / "SST-2").mkdir(parents=True)
    for split, n in (("train", 40), ("dev", 12)):
        lines = ["sentence\tlabel"]
        for _ in range(n):
            label = rng.randint(0, 1)
            words = [rng.choice(POSITIVE if label else NEGATIVE)] + rng.sample(WORDS[8:], 3)
            rng.shuffle(words)
            lines.append(f"{' '.join(words)} \t{label}")
        (glue / "SST-2" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return root, model_dir, glue


def _quality_args(root, model_dir, glue, json_name, presets=("lora", "unipelt")):
    return ["--model", str(model_dir), "--data-dir", str(glue), "--tasks", "sst2", "--presets", *presets,
            "--seeds", "0", "--train-rows", "16", "--epochs", "1", "--batch-size", "8", "--max-length", "16",
            "--jobs", "0", "--work-dir", str(root / "work-q"), "--json", str(root / json_name),
            "--markdown", str(root / (json_name[:-5] + ".md"))]


def test_quality_and_lowres_smoke(tiny_setup):
    import bench_lowres
    import bench_quality

    root, model_dir, glue = tiny_setup
    data = bench_quality.main(_quality_args(root, model_dir, glue, "quality.json"))
    rows = {r["label"]: r for r in data["rows"]}
    assert set(rows) == {"lora", "unipelt"}
    for r in rows.values():
        assert 0.0 <= r["main_score"] <= 1.0 and r["train_examples"] == 16 and r["eval_examples"] == 12
        assert r["trainable_params"] > 0 and r["peak_memory_mb"] > 0 and r["train_only_s"] >= 0
    md = (root / "quality.md").read_text()
    assert "| lora |" in md and "| unipelt |" in md and "bench/bench_quality.py" in md
    # UniPELT gates read after training: every layer, each gated submodule, values in (0, 1)
    gates = rows["unipelt"]["gates"]
    assert sorted(gates) == ["0", "1", "2", "3"] and "gates" not in rows["lora"]
    assert all(set(g) == {"adapter", "prefix", "lora"} and all(0 < v < 1 for v in g.values()) for g in gates.values())
    saved = json.loads((root / "quality.json").read_text())
    assert len(saved["rows"]) == 2

    # resumable: a second call with the same rows runs nothing new
    again = bench_quality.main(_quality_args(root, model_dir, glue, "quality.json"))
    assert len(again["rows"]) == 2

    # determinism: the same row, same seed, run afresh into another file, gives the same score
    rerun = bench_quality.main(_quality_args(root, model_dir, glue, "quality-rerun.json", presets=("lora",)))
    first, second = rows["lora"], rerun["rows"][0]
    assert second["main_score"] == first["main_score"]
    assert second["metrics"]["loss"] == first["metrics"]["loss"] and second["train_loss"] == first["train_loss"]

    low = bench_lowres.main([
        "--model", str(model_dir), "--data-dir", str(glue), "--tasks", "sst2", "--ks", "8", "--dev-rows", "8",
        "--epochs", "8=2", "--evals", "2", "--presets", "lora", "--seeds", "0", "--batch-size", "4",
        "--max-length", "16", "--jobs", "0", "--work-dir", str(root / "work-l"),
        "--json", str(root / "lowres.json"), "--markdown", str(root / "lowres.md")])
    (row,) = low["rows"]
    assert row["k"] == 8 and row["train_examples"] == 8 and row["eval_examples"] == 8
    assert row["test_examples"] == 12 and 0.0 <= row["main_score"] <= 1.0 and "dev_score" in row
    # the selection rows are other training rows than the K training rows
    folder = Path(root / "work-l" / "data" / "sst2-k8-dev8-s0" / "SST-2")
    train_rows = folder.joinpath("train.tsv").read_text().splitlines()[1:]
    dev_rows = folder.joinpath("dev.tsv").read_text().splitlines()[1:]
    assert len(train_rows) == 8 and len(dev_rows) == 8
    assert "K=8" in (root / "lowres.md").read_text()

    import plots

    made = plots.main(["--quality", str(root / "quality.json"), "--lowres", str(root / "lowres.json"),
                       "--out", str(root / "png"), "--model", str(model_dir)])
    assert {p.name for p in made} == {"quality_vs_params.png", "unipelt_gates.png", "layer_map.png", "lowres.png"}
    assert all(p.stat().st_size > 1000 for p in made)
