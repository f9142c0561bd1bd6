"""Text-to-text: your own source/target files, GLUE and SQuAD recast on encoder-decoder LMs, BART, the
text metrics. Tiny random T5 / BART with word-level tokenizers (tests/tiny_lm.py)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

import tiny_lm
from lamina.tasks import TaskError, get_task

FAST = dict(batch_size=8, max_length=32, progress=False, logging_steps=4)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("s2s")


@pytest.fixture(scope="module")
def t5(root):
    return tiny_lm.lm_dir(root, "t5")


def write_rte(folder: Path, n_train: int = 32, n_dev: int = 8) -> Path:
    """GLUE layout RTE/train.tsv, dev.tsv: entailment iff the hypothesis starts with "good"."""
    rng = random.Random(0)
    task = folder / "RTE"
    task.mkdir(parents=True, exist_ok=True)
    for name, n in (("train.tsv", n_train), ("dev.tsv", n_dev)):
        rows = ["index\tsentence1\tsentence2\tlabel"]
        for i in range(n):
            label = rng.choice(["entailment", "not_entailment"])
            premise = " ".join(rng.sample(tiny_lm.WORDS, 4))
            rows.append(f"{i}\t{premise}\t{'good' if label == 'entailment' else 'bad'} {premise}\t{label}")
        (task / name).write_text("\n".join(rows) + "\n")
    return folder


def test_own_source_target_files_train_evaluate_and_predict(t5, root, tmp_path):
    from lamina.evaluate import evaluate_adapter, predict_file
    from lamina.train import train

    data = tiny_lm.write_seq2seq(root / "pairs")
    results = train(t5, "seq2seq", "lora:r=4", data, tmp_path / "run", epochs=3, lr=3e-2, **FAST)
    assert results["kind"] == "seq2seq" and results["main_metric"] == "rougeL"
    assert {"exact_match", "rouge1", "rouge2", "rougeL", "bleu", "loss", "perplexity"} <= results["best"].keys()
    losses = [e["loss"] for e in results["evaluations"]]
    assert losses[-1] < losses[0]
    longest = max(len(t.split()) for _, t in tiny_lm.pairs(32, 0)) + 1  # + </s>
    assert results["options"]["max_new_tokens"] == longest  # default generation length: the longest target
    again = evaluate_adapter(tmp_path / "run", "seq2seq")  # data folder and generation options from the run
    best = results["best"]
    assert again["metrics"]["rougeL"] == pytest.approx(best["rougeL"])
    assert again["metrics"]["loss"] == pytest.approx(best["loss"], rel=1e-5)
    inputs = tiny_lm.write_jsonl(tmp_path / "in.jsonl", [{"source": "one good film two", "id": "q"},
                                                          {"source": "the king"}])
    rows = predict_file(tmp_path / "run", inputs, tmp_path / "out.jsonl", max_new_tokens=6)
    assert [r["id"] for r in rows] == ["q", "1"] and all(isinstance(r["generation"], str) for r in rows)
    assert [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()] == rows

    # merged into a plain Hugging Face folder (lamina merge): the same generations without lamina
    import lamina
    from lamina.tasks import TaskOptions, get_kind
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    lamina.export_merged(tmp_path / "run", tmp_path / "merged", strict=True)
    merged = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "merged").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "merged")
    prompts = [tok(json.loads(line)["source"])["input_ids"] for line in inputs.read_text().splitlines()]
    texts = get_kind("seq2seq").generate(merged, tok, prompts, TaskOptions(max_new_tokens=6))
    assert texts == [r["generation"] for r in rows]


def test_explicit_files_and_bad_lines(t5, root, tmp_path):
    from lamina.train import train

    data = tiny_lm.write_seq2seq(root / "pairs2", n_train=8, n_dev=4)
    files = {"train": data / "train.jsonl", "validation": data / "dev.jsonl"}
    results = train(t5, "seq2seq", "bitfit", files, tmp_path / "run", epochs=1, **FAST)
    assert results["options"]["data_dir"] == {k: str(v) for k, v in files.items()}
    bad = tiny_lm.write_jsonl(tmp_path / "bad" / "train.jsonl", [{"source": "a", "target": "b"}, {"source": "c"}])
    tiny_lm.write_jsonl(tmp_path / "bad" / "dev.jsonl", [{"source": "a", "target": "b"}])
    with pytest.raises(TaskError, match=r"bad/train.jsonl:2: missing field 'target'"):
        train(t5, "seq2seq", "bitfit", tmp_path / "bad", tmp_path / "never", epochs=1, **FAST)
    assert not (tmp_path / "never").exists()  # nothing written


def test_glue_runs_as_text_to_text_on_t5(t5, root, tmp_path):
    from lamina.evaluate import predict_file
    from lamina.train import train

    glue = write_rte(root / "glue")
    results = train(t5, "rte", "lora:r=4", glue, tmp_path / "run", epochs=2, lr=3e-2, **FAST)
    assert results["task"] == "rte" and results["kind"] == "seq2seq" and results["main_metric"] == "accuracy"
    assert 0.0 <= results["best"]["accuracy"] <= 1.0 and "loss" in results["best"]
    assert results["options"]["max_new_tokens"] == 2  # "not_entailment" + </s>
    inputs = tiny_lm.write_jsonl(tmp_path / "in.jsonl", [{"text": "one good film", "text_pair": "good one good film"}])
    row = predict_file(tmp_path / "run", inputs)[0]
    assert set(row) == {"id", "generation", "label", "label_id"}
    assert row["label"] in ("entailment", "not_entailment", None)


def test_text_forms_of_the_logit_kinds():
    """Sources and targets of GLUE / STS-B / SQuAD as text-to-text, and how generations are read back."""
    from lamina.tasks import kinds
    from lamina.tasks.kinds import for_model
    from transformers import BartConfig, BertConfig, T5Config

    rte, stsb, squad = get_task("rte"), get_task("stsb"), get_task("squad")
    recast = for_model(rte, T5Config())
    assert recast.kind == "seq2seq" and recast.base is rte and recast.main_metric == "accuracy"
    assert for_model(rte, BartConfig()).kind == "seq2seq" and for_model(rte, BertConfig()) is rte
    seq2seq = kinds()["seq2seq"]
    ex = {"text": "a b", "text_pair": "c", "label": 1, "id": "0"}
    assert seq2seq.pair(recast, ex) == ("rte sentence1: a b sentence2: c", "not_entailment")
    assert rte.type.score_texts(rte, ["not_entailment", "yes"], [ex, ex]) == {"accuracy": 0.5}
    assert stsb.type.text_target(stsb, {"label": 3.87}) == "3.8" and stsb.type.text_target(stsb, {"label": 3.9}) == "4.0"
    assert stsb.type.text_value(stsb, " 2.4") == 2.4 and stsb.type.text_value(stsb, "many") == -1.0
    qa = {"id": "q", "question": " who?", "context": "the king", "answers": {"text": ["king", "the king"], "answer_start": [4, 0]}}
    assert squad.type.text_source(squad, qa) == "question: who? context: the king"
    assert squad.type.text_target(squad, qa) == "king"
    assert squad.type.score_texts(squad, ["The King"], [qa]) == {"exact_match": 100.0, "f1": 100.0}


def test_bart_is_one_family_entry(root, tmp_path):
    from lamina.arch import map_model
    from lamina.train import train

    model = tiny_lm.lm("bart")
    mmap = map_model(model)
    assert mmap.family.name == "bart" and mmap.stacks == {"encoder": 2, "decoder": 2} and mmap.head == []
    bart = tiny_lm.lm_dir(root, "bart")
    data = tiny_lm.write_seq2seq(root / "pairs3", n_train=16, n_dev=4)
    results = train(bart, "seq2seq", "unipelt", data, tmp_path / "run", epochs=1, **FAST)
    assert results["kind"] == "seq2seq" and results["trainable_params"] > 0


def test_bart_context_is_checked(root, tmp_path):
    from lamina.train import train

    bart = tiny_lm.lm_dir(root, "bart")  # 64 positions
    data = tiny_lm.write_seq2seq(tmp_path / "long", n_train=4, n_dev=2)
    rows = [json.loads(x) for x in (data / "dev.jsonl").read_text().splitlines()]
    rows[1]["source"] = " ".join(["one"] * 80)
    tiny_lm.write_jsonl(data / "dev.jsonl", rows)
    with pytest.raises(TaskError, match=r"long/dev.jsonl:2: field 'source': 82 tokens, more than the model's context of 64"):
        train(bart, "seq2seq", "lora", data, tmp_path / "never", epochs=1, **FAST)
    assert not (tmp_path / "never").exists()


def test_text_metrics():
    from lamina.tasks.generation import loss_metrics, text_metrics

    same = text_metrics(["the cat sat on the mat"], ["the cat sat on the mat"])
    assert same == {"exact_match": 100.0, "rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0, "bleu": pytest.approx(100.0)}
    part = text_metrics(["The cat sat.", "a dog"], ["the cat sat down", "one bird"])
    assert part["exact_match"] == 0.0  # normalised, but "down" is missing
    assert part["rouge1"] == pytest.approx(100 * (6 / 7) / 2)  # P 3/3, R 3/4 -> F 6/7; the other pair 0
    assert loss_metrics(6.0, 3) == {"loss": 2.0, "perplexity": pytest.approx(7.389056)}


def test_params_counts_t5_as_text_to_text(tmp_path):
    from typer.testing import CliRunner

    from lamina.cli import app

    import transformers as T

    T.T5Config(d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4, vocab_size=100).to_json_file(tmp_path / "config.json")
    runner = CliRunner()
    out = {}
    for head in ("classification", "seq2seq"):
        result = runner.invoke(app, ["params", "-m", str(tmp_path / "config.json"), "-d", "lora", "--head", head, "--json"])
        assert result.exit_code == 0, result.output
        out[head] = json.loads(result.stdout)
    assert out["classification"] == out["seq2seq"]  # a classification task on T5 trains as text-to-text
    result = runner.invoke(app, ["params", "-m", str(tmp_path / "config.json"), "-d", "lora", "--head", "nope"])
    assert result.exit_code == 2 and "seq2seq" in result.stderr and "sft" in result.stderr
