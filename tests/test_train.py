"""Training on tiny random models and tiny generated data: what trains, what is stored, what is frozen,
checkpoints, determinism, resume after SIGKILL, regression / text / SQuAD tasks end to end.

The helpers at the top (tiny model folders, generated data) are shared by the other test_train_* files.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

import tiny

WORDS = ("good bad movie film plot actor great awful fun dull story scene the a is was very not and but "
         "who what where when which one two three four five city river king queen").split()
SRC = Path(__file__).resolve().parents[1] / "src"


# --------------------------------------------------------------------------- shared helpers


def make_model_dir(root: Path, head: str = "classification", num_labels: int = 2, seed: int = 0) -> str:
    """A tiny random BERT (hidden 32, 4 layers) + an offline BertTokenizerFast, saved like a hub model."""
    import transformers as T

    folder = root / f"tiny-{head}-{num_labels}"
    if (folder / "config.json").is_file():
        return str(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    T.BertTokenizerFast(vocab=str(vocab)).save_pretrained(folder)  # transformers 5: the vocab file is `vocab`
    cfg = tiny.config("bert")
    cfg.num_labels = num_labels
    torch.manual_seed(seed)
    model = T.BertForQuestionAnswering(cfg) if head == "qa" else T.BertForSequenceClassification(cfg)
    model.save_pretrained(folder)
    return str(folder)


def sentiment_rows(n: int, seed: int) -> list[tuple[str, int]]:
    """Random word strings; the label is 1 iff the string contains 'good' (else it contains 'bad')."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = [rng.choice(WORDS[2:20]) for _ in range(rng.randint(3, 8))]
        words.insert(rng.randrange(len(words) + 1), "good" if label else "bad")
        rows.append((" ".join(words), label))
    return rows


def write_sst2(root: Path, n_train: int = 96, n_dev: int = 32, seed: int = 0) -> Path:
    """A GLUE root with SST-2/train.tsv and dev.tsv in the original layout."""
    folder = root / "glue" / "SST-2"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n, s in (("train.tsv", n_train, seed), ("dev.tsv", n_dev, seed + 1)):
        lines = ["sentence\tlabel"] + [f"{text} \t{label}" for text, label in sentiment_rows(n, s)]
        (folder / name).write_text("\n".join(lines) + "\n")
    return root / "glue"


def adapter_tensors(folder) -> dict[str, torch.Tensor]:
    import safetensors.torch

    return safetensors.torch.load_file(str(Path(folder) / "adapter.safetensors"))


def subprocess_env(**extra) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", OMP_WAIT_POLICY="PASSIVE",
               PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(extra)
    return env


FAST = dict(batch_size=16, max_length=32, progress=False, logging_steps=4)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return root, make_model_dir(root), write_sst2(root)


class Grab(TrainerCallback):
    """Keeps a reference to the trained model (handed to callbacks at the end of training)."""

    model = None

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.model = model


# --------------------------------------------------------------------------- tests


def test_trains_exactly_the_design_and_checkpoints_hold_only_adapter_tensors(tiny_root, tmp_path):
    import transformers as T

    import lamina
    from lamina.evaluate import evaluate_adapter
    from lamina.train import train

    root, model_dir, data = tiny_root
    grab = Grab()
    out = tmp_path / "run"
    results = train(model_dir, "sst2", "spafit:n1=1,n2=2", data, out, epochs=2, lr=1e-2, keep_checkpoints=True,
                    callbacks=[grab], final_eval=True, **FAST)

    # trainable parameters: exactly what the builder reports for this design on this model
    fresh = T.AutoModelForSequenceClassification.from_pretrained(model_dir)
    expected = lamina.apply(fresh, "spafit:n1=1,n2=2", dry_run=True)
    assert results["trainable_params"] == expected.trainable == results["params_report"]["trainable"]
    model = grab.model
    trained_names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained_names and all(n.startswith("lamina_adapters.default.") for n in trained_names)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected.trainable

    # frozen base weights are bit-identical to the checkpoint on disk
    base = dict(fresh.state_dict())
    trained = {k: v for k, v in model.state_dict().items() if not k.startswith("lamina_adapters.")}
    assert trained.keys() == base.keys()
    assert all(torch.equal(trained[k], base[k]) for k in base)
    # ... and training moved the adapter (LoRA B starts at zero)
    stored = adapter_tensors(out)
    assert any(k.endswith(".B") and v.abs().sum() > 0 for k, v in stored.items())
    assert sum(v.numel() for v in stored.values()) == results["stored_params"] == expected.stored

    # checkpoints: adapter tensors + optimizer/scheduler/RNG/trainer state, never full model weights
    checkpoints = sorted((out / "checkpoints").glob("checkpoint-*"))
    assert len(checkpoints) == 2
    for ckpt in checkpoints:
        names = {p.name for p in ckpt.iterdir()}
        assert names == {"design.json", "adapter.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth",
                         "trainer_state.json"}, names
        assert adapter_tensors(ckpt).keys() == stored.keys()
        optimizer = torch.load(ckpt / "optimizer.pt", weights_only=True)
        assert sum(s["exp_avg"].numel() for s in optimizer["state"].values()) == expected.trainable

    # results.json: every metric per epoch and of the best checkpoint, counts, time, memory, versions, design
    saved = json.loads((out / "results.json").read_text())
    assert saved["task"] == "sst2" and saved["main_metric"] == "accuracy"
    assert [e["epoch"] for e in saved["evaluations"]] == [1.0, 2.0]
    assert {"accuracy", "loss"} <= saved["best"].keys()
    assert saved["best"]["accuracy"] == max(e["accuracy"] for e in saved["evaluations"])
    assert saved["final_eval"]["accuracy"] == saved["best"]["accuracy"]  # the best checkpoint was restored
    assert saved["train_time_s"] > 0 and saved["peak_memory_mb"] > 0 and saved["seed"] == 42
    assert {"lamina", "torch", "transformers"} <= saved["versions"].keys()
    assert lamina.Design.from_dict(saved["design"]).name == "spafit-n11-n22"
    log_lines = (out / "train.log").read_text().splitlines()
    assert any("eval_accuracy" in line for line in log_lines)

    # the saved adapter scores the same through lamina.load
    again = evaluate_adapter(out, "sst2", data)
    assert again["metrics"]["accuracy"] == pytest.approx(saved["best"]["accuracy"], abs=1e-9)


LORA = dict(epochs=3, lr=3e-2, eval_steps=5, **FAST)  # 96 rows / 16 = 6 steps per epoch, 18 in all


@pytest.fixture(scope="module")
def lora_reference(tiny_root, tmp_path_factory):
    """One uninterrupted LoRA run, the reference for the determinism and resume tests."""
    from lamina.train import train

    root, model_dir, data = tiny_root
    out = tmp_path_factory.mktemp("reference") / "run"
    return train(model_dir, "sst2", "lora:r=4", data, out, **LORA), out


def timeless(value):
    """Results without wall-clock fields (runtime, samples per second)."""
    if isinstance(value, list):
        return [timeless(v) for v in value]
    return {k: v for k, v in value.items() if "runtime" not in k and "per_second" not in k}


def test_same_seed_same_run(tiny_root, lora_reference, tmp_path):
    from lamina.train import train

    root, model_dir, data = tiny_root
    reference, reference_dir = lora_reference
    again = train(model_dir, "sst2", "lora:r=4", data, tmp_path / "again", **LORA)
    assert len(again["evaluations"]) == 4  # steps 5, 10, 15 and the last one, 18
    assert timeless(again["evaluations"]) == timeless(reference["evaluations"])
    assert again["train_loss"] == reference["train_loss"] and again["best_step"] == reference["best_step"]
    a, b = adapter_tensors(reference_dir), adapter_tensors(tmp_path / "again")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other = train(model_dir, "sst2", "lora:r=4", data, tmp_path / "seed7", epochs=1, lr=3e-2, seed=7, **FAST)
    c = adapter_tensors(tmp_path / "seed7")
    assert other["seed"] == 7 and not all(torch.equal(a[k], c[k]) for k in a)


KILLED_RUN = """
import sys, time
from transformers import TrainerCallback
from lamina.train import train

class StopHere(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        print("SAVED", state.global_step, flush=True)
        time.sleep(600)  # the test kills us here, right after the first complete checkpoint

train({model!r}, "sst2", "lora:r=4", {data!r}, {out!r}, callbacks=[StopHere()], **{options!r})
"""


def test_resume_after_sigkill_reaches_the_same_result(tiny_root, lora_reference, tmp_path):
    from lamina.train import train

    root, model_dir, data = tiny_root
    reference, reference_dir = lora_reference
    out = tmp_path / "killed"
    script = tmp_path / "killed_run.py"
    script.write_text(KILLED_RUN.format(model=model_dir, data=str(data), out=str(out), options=LORA))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=subprocess_env())
    try:
        line = ""
        deadline = time.time() + 120
        while not line.startswith("SAVED") and time.time() < deadline:
            line = proc.stdout.readline() or line
            if proc.poll() is not None:
                break
        assert line.startswith("SAVED"), "the training subprocess never wrote a checkpoint"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "results.json").exists() and (out / "checkpoints" / "checkpoint-5").is_dir()
    # a checkpoint that a kill cut short (no trainer_state.json) is skipped and removed
    half = out / "checkpoints" / "checkpoint-10"
    half.mkdir()
    (half / "design.json").write_text("{")

    resumed = train(model_dir, "sst2", "lora:r=4", data, out, resume=True, **LORA)
    assert resumed["resumed_from"].endswith("checkpoint-5")
    assert not half.exists()
    assert timeless(resumed["evaluations"]) == timeless(reference["evaluations"])
    assert timeless(resumed["best"]) == timeless(reference["best"]) and resumed["best_step"] == reference["best_step"]
    a, b = adapter_tensors(reference_dir), adapter_tensors(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_stsb_regression_head(tmp_path):
    from lamina.train import train

    model_dir = make_model_dir(tmp_path, num_labels=1)
    folder = tmp_path / "glue" / "STS-B"
    folder.mkdir(parents=True)
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    rng = random.Random(0)
    for name, n in (("train.tsv", 48), ("dev.tsv", 16)):
        rows = [header]
        for i in range(n):
            a, b = " ".join(rng.sample(WORDS, 4)), " ".join(rng.sample(WORDS, 4))
            rows.append(f"{i}\tmain\tx\t2012\t{i}\tnone\tnone\t{a}\t{b}\t{rng.uniform(0, 5):.3f}")
        (folder / name).write_text("\n".join(rows) + "\n")
    results = train(model_dir, "stsb", "bitfit", tmp_path / "glue", tmp_path / "run", epochs=1, **FAST)
    assert results["options"]["label_mean_init"] is True
    assert results["kind"] == "regression" and results["main_metric"] == "combined_score"
    assert {"pearson", "spearman", "combined_score"} <= results["best"].keys()
    info = json.loads((tmp_path / "run" / "design.json").read_text())
    assert len(info["base_config"]["id2label"]) == 1 and info["base_config"]["problem_type"] == "regression"


def test_text_classification_jsonl_and_predict(tmp_path):
    from lamina.evaluate import predict_file
    from lamina.train import train

    model_dir = make_model_dir(tmp_path)
    data = tmp_path / "reviews"
    data.mkdir()
    for name, n, seed in (("train.jsonl", 64, 0), ("dev.jsonl", 16, 1)):
        lines = [json.dumps({"text": t, "label": "pos" if y else "neg"}) for t, y in sentiment_rows(n, seed)]
        (data / name).write_text("\n".join(lines) + "\n")
    results = train(model_dir, "text", "lora:r=2", data, tmp_path / "run", epochs=1, **FAST)
    assert results["task"] == "text" and {"accuracy", "macro_f1"} <= results["best"].keys()
    inputs = tmp_path / "in.jsonl"
    inputs.write_text(json.dumps({"id": "a", "text": "good film"}) + "\n" + json.dumps({"text": "bad plot"}) + "\n")
    rows = predict_file(tmp_path / "run", inputs, tmp_path / "preds.jsonl")
    written = [json.loads(line) for line in (tmp_path / "preds.jsonl").read_text().splitlines()]
    assert rows == written and len(rows) == 2 and rows[0]["id"] == "a"
    assert all(r["label"] in ("neg", "pos") and 0.5 <= r["score"] <= 1.0 for r in rows)


def squad_file(path: Path, articles: int, seed: int) -> None:
    rng = random.Random(seed)
    data = []
    for a in range(articles):
        paragraphs = []
        for p in range(2):
            words = [rng.choice(WORDS) for _ in range(rng.randint(20, 40))]
            context = " ".join(words)
            qas = []
            for q in range(3):
                start = rng.randrange(len(words) - 2)
                answer = " ".join(words[start:start + rng.randint(1, 2)])
                char = len(" ".join(words[:start])) + (1 if start else 0)
                assert context[char:char + len(answer)] == answer
                qas.append({"id": f"{seed}-{a}-{p}-{q}", "question": f"which {words[start]} ?",
                            "answers": [{"text": answer, "answer_start": char}] * 2})
            paragraphs.append({"context": context, "qas": qas})
        data.append({"title": f"article {seed}-{a}", "paragraphs": paragraphs})
    path.write_text(json.dumps({"version": "1.1", "data": data}))


def test_squad_train_and_eval_end_to_end(tmp_path):
    from lamina.evaluate import evaluate_adapter
    from lamina.train import train

    model_dir = make_model_dir(tmp_path, head="qa")
    data = tmp_path / "squad"
    data.mkdir()
    squad_file(data / "train-v1.1.json", 4, 0)
    squad_file(data / "dev-v1.1.json", 2, 1)
    # max_length 24 with stride 8 forces several windows per context (contexts are 20-40 words)
    results = train(model_dir, "squad", "lora:r=2", data, tmp_path / "run", epochs=1, doc_stride=8,
                    **{**FAST, "max_length": 24})
    assert results["kind"] == "qa" and results["main_metric"] == "f1"
    assert {"exact_match", "f1"} <= results["best"].keys() and results["eval_examples"] == 12
    assert 0.0 <= results["best"]["exact_match"] <= results["best"]["f1"] <= 100.0
    again = evaluate_adapter(tmp_path / "run", "squad", data, doc_stride=8)
    assert again["metrics"]["f1"] == pytest.approx(results["best"]["f1"], abs=1e-6)
    assert again["metrics"]["exact_match"] == pytest.approx(results["best"]["exact_match"], abs=1e-6)


def test_squad_folder_with_only_the_dev_file_is_split_by_article(tmp_path):
    from lamina.evaluate import load_split
    from lamina.tasks import get_task

    data = tmp_path / "squad"
    data.mkdir()
    squad_file(data / "dev-v1.1.json", 5, 3)
    spec = get_task("squad")
    train, note = load_split(spec, data, "train")
    dev, _ = load_split(spec, data, "validation")
    assert note and "split by article" in note
    assert {e["title"] for e in train}.isdisjoint({e["title"] for e in dev}) and len(train) + len(dev) == 30


def test_bad_options_are_user_errors(tiny_root, tmp_path):
    from lamina.errors import LaminaError
    from lamina.train import train

    root, model_dir, data = tiny_root
    for bad in (dict(lr=0), dict(epochs=-1), dict(batch_size=0), dict(warmup_ratio=1.5), dict(train_limit=0)):
        with pytest.raises(LaminaError):
            train(model_dir, "sst2", "bitfit", data, tmp_path / "x", **bad)
    with pytest.raises(LaminaError, match="cannot load model"):
        train(str(tmp_path / "no-model"), "sst2", "bitfit", data, tmp_path / "x")
    with pytest.raises(LaminaError, match="unknown preset"):
        train(model_dir, "sst2", "nope:r=1", data, tmp_path / "x")


@pytest.mark.parametrize("design", ["spafit:n1=1,n2=2", "prefix:length=3,mlp=16", "unipelt", "full"])
def test_checkpoint_round_trip_restores_every_trained_tensor_in_place(design, tmp_path):
    import lamina
    from lamina.train import REPARAM_FILE, restore_checkpoint_model, save_checkpoint_model

    model = tiny.model("bert", num_labels=2)
    lamina.apply(model, design)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    before = {n: p.detach().clone() for n, p in params.items()}
    save_checkpoint_model(model, tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / REPARAM_FILE).is_file() == ("mlp" in design or design == "unipelt")
    with torch.no_grad():
        for p in params.values():
            p.add_(1.0)
    restore_checkpoint_model(model, tmp_path / "ckpt")
    after = dict(model.named_parameters())
    assert all(after[n] is params[n] for n in params)  # same Parameter objects: an optimizer stays valid
    assert all(torch.equal(params[n], before[n]) for n in params)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == set(params)


@pytest.mark.parametrize("family", ["bert", "roberta", "deberta-v2", "gpt2", "llama"])
def test_regression_head_starts_at_the_mean_label_and_adapters_inherit_it(family):
    import lamina
    from lamina.train import init_regression_bias

    m = tiny.model(family, num_labels=1)
    inputs = tiny.batch(family)
    before = tiny.logits(m, inputs)
    mean = init_regression_bias(m, [1.0, 2.0, 4.5])
    after = tiny.logits(m, inputs)
    if family in ("gpt2", "llama"):  # `score` has no bias: nothing to set, nothing changes
        assert mean is None and torch.equal(before, after)
        return
    assert mean == 2.5
    head_bias = [mod.bias for mod in m.modules() if isinstance(mod, torch.nn.Linear) and mod.out_features == 1][-1]
    assert head_bias.item() == 2.5
    old_bias = after - before  # the outputs move by exactly (new bias - old bias)
    assert torch.allclose(old_bias, old_bias[0].expand_as(old_bias))
    lamina.apply(m, "lora")  # zero-init LoRA: the adapter's head copy starts at the same bias
    assert torch.equal(tiny.logits(m, inputs), after)
