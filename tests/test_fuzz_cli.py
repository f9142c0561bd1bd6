"""Hostile inputs over every command, in-process (typer's CliRunner). Each case must end with exit code 2,
exactly one line on stderr (`error: ...`), no traceback, nothing created or changed on disk (the case's
scratch folder, which is also the working directory, and the shared world of valid inputs), and the
pickle trap never sprung: `UNPICKLED` never appears.

Cases are grouped by command; each builds its bad input in its own scratch folder from the valid world
(tests/fuzz_world.py). The exact messages of the design layer's refusals are pinned in
tests/test_design_refusals.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from typer.testing import CliRunner

from fuzz_world import World, put, snapshot
from lamina.cli import app

runner = CliRunner()


@dataclass
class Case:
    argv: Callable[[World, Path], list]


CASES: list = []


def case(name: str):
    def register(fn):
        CASES.append(pytest.param(Case(fn), id=name))
        return fn
    return register


def jsonl(*rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


NOT_UTF8 = b"groups:\n  - layers: 0-1\n    strategies: [bitfit]  # caf\xe9 \xff\xfe\n"


# --- shared builders --------------------------------------------------------------------------------
def config_file(w: World, s: Path, **changes) -> Path:
    data = json.loads((w.model / "config.json").read_text())
    data.update(changes)
    return put(s, "config.json", {k: v for k, v in data.items() if v is not ...})


def model_copy(w: World, s: Path, config=None, raw: bytes | None = None) -> Path:
    folder = w.copy(w.model, s / "m")
    if raw is not None:
        (folder / "config.json").write_bytes(raw)
    elif config is not None:
        base = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(config(base)))
    return folder


def adapter_copy(w: World, s: Path, info=None, tensors=None, source: Path | None = None) -> Path:
    """A copy of the LoRA adapter; `info(d)` edits design.json, `tensors(t)` edits the tensors (the checksum
    in design.json is updated, so only the edit is wrong)."""
    import hashlib

    import safetensors.torch

    folder = w.copy(source or w.adapter, s / "ad")
    path = folder / "design.json"
    data = json.loads(path.read_text())
    if tensors is not None:
        values = safetensors.torch.load_file(str(folder / "adapter.safetensors"))
        safetensors.torch.save_file(tensors(values) or values, str(folder / "adapter.safetensors"))
        data["sha256"] = hashlib.sha256((folder / "adapter.safetensors").read_bytes()).hexdigest()
    if info is not None:
        data = info(data)
    path.write_text(json.dumps(data))
    return folder


def peft_copy(w: World, s: Path, config=None, raw: bytes | None = None) -> Path:
    folder = w.copy(w.peft, s / "peft")
    if raw is not None:
        (folder / "adapter_config.json").write_bytes(raw)
    elif config is not None:
        base = json.loads((folder / "adapter_config.json").read_text())
        (folder / "adapter_config.json").write_text(json.dumps(config(base)))
    return folder


def edit(d: dict, path: str, value):
    """d with the dotted `path` set (list indices as numbers); returns d."""
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    node = d
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    return d


def params(w, design="lora", model=None, *extra):
    return ["params", "--model", str(model or w.model), "--design", design, *extra]


def train(w, s, *extra, model=None, task="sst2", data=None, design="bitfit"):
    return ["train", "--model", str(model or w.model), "--task", task, "--data-dir", str(data or w.glue),
            "--design", design, "--output", str(s / "run"), "--no-progress", "--epochs", "1", *extra]


def evaluate(w, adapter, *extra, task="sst2"):
    return ["eval", "--adapter", str(adapter), "--task", task, "--data-dir", str(w.glue), *extra]


def predict(w, s, adapter=None, rows=None, *extra):
    source = put(s, "in.jsonl", rows if rows is not None else jsonl({"text": "good film"}))
    return ["predict", "--adapter", str(adapter or w.adapter), "--input", str(source), *extra]


def search(w, s, *extra, model=None, data=None):
    return ["search", "--model", str(model or w.model), "--task", "sst2", "--data-dir", str(data or w.glue),
            "--output", str(s / "out"), "--strategy", "greedy", "--trials-per-stage", "2", "--epochs", "1",
            "--max-length", "16", "--batch-size", "8", *extra]


# --- params: preset strings ---------------------------------------------------------------------------
for text in ("lora:r=0", "lora:r=-1", "lora:r=abc", "lora:r=1.5", "lora:alpha=x", "lora:dropout=2", "lora:dropout=-0.1",
             "lora:targets=zz", "lora:targets=", "lora:zz=1", "lora:r", "adapter:bottleneck=-3",
             "adapter:reduction_factor=0", "adapter:placement=sideways", "prompt:length=0", "prompt:length=-2",
             "prefix:length=0", "prefix:mlp=-5", "s4:budget=lots", "s4:budget=0", "s4:budget=-1%",
             "s4:allocation=sideways", "spafit:n1=-1", "spafit:n1=3,n2=2", "spafit:n2=9",
             "bitfit:which=nope", "unipelt:r=0", "unipelt:bottleneck=-1", "lora:budget=lots", "lora:budget=0", "bogus",
             "", ":", "full:x=1", "lora:r=8,r=9,=3", "adapter-houlsby:placement=x"):
    case(f"params-preset[{text}]")(lambda w, s, t=text: params(w, t))
for text in ("lora:r=true", "lora:r=100000", "s4:budget=500%", "lora:budget=500%", "adapter:bottleneck=true"):
    case(f"params-preset[{text}]")(lambda w, s, t=text: params(w, t))
for text in ("prefix:length=100000", "adapter:bottleneck=0", "spafit:n1=a", "lora:targets=q+q", "lora:alpha=-1"):
    case(f"params-preset[{text}]")(lambda w, s, t=text: params(w, t))

# --- params: design files -----------------------------------------------------------------------------
DESIGN_FILES = {
    "not-utf8": NOT_UTF8, "list": "- layers: 0-1\n", "scalar": "lora\n", "bad-yaml": "groups: [\n", "empty": "",
    "unknown-field": "colour: red\n", "out-of-range": "groups: [{layers: 9-12, strategies: [bitfit]}]\n",
    "bad-range": "groups: [{layers: a-b, strategies: [bitfit]}]\n",
    "unknown-method": "groups: [{layers: 0-1, strategies: [dora]}]\n",
    "overlap": "groups: [{layers: 0-2, strategies: [bitfit]}, {layers: 1-3, strategies: [ln]}]\n",
    "strategies-number": "groups: [{layers: 0-1, strategies: 5}]\n",  # (a lone `strategies: lora` is accepted)
    "dropout-5": "groups: [{layers: 0-1, strategies: [{lora: {dropout: 5}}]}]\n",
    "groups-mapping": "groups: {layers: 0-1}\n", "binary": b"\x00\x01\x02\x03",
}
for name, content in DESIGN_FILES.items():
    case(f"params-design-file[{name}]")(lambda w, s, c=content: params(w, str(put(s, "d.yaml", c))))
STRICT_FILES = {
    "r-true": "groups: [{layers: 0-1, strategies: [{lora: {r: true}}]}]\n",
    "layers-true": "groups: [{layers: true, strategies: [bitfit]}]\n",
    "r-huge": "groups: [{layers: 0-1, strategies: [{lora: {r: 100000}}]}]\n",
    "budget-500": "groups: [{layers: 0-3, strategies: [{lora: {r: null}}]}]\nbudget: {target: 500%}\n",
}
for name, content in STRICT_FILES.items():  # strict types and sizes bounded by the model: the design layer's
    case(f"params-design-file[{name}]")(lambda w, s, c=content: params(w, str(put(s, "d.yaml", c))))
case("params-design-missing")(lambda w, s: params(w, str(s / "nope.yaml")))
case("params-design-folder")(lambda w, s: params(w, str((s / "dir.yaml").mkdir() or s / "dir.yaml")))
case("params-design-json-broken")(lambda w, s: params(w, str(put(s, "d.json", "{\"groups\": [}"))))

# --- params: model configs ------------------------------------------------------------------------------
CONFIGS = {
    "hidden-string": dict(hidden_size="big"), "unknown-type": dict(model_type="zzz-net"),
    "unsupported-type": dict(model_type="distilbert"), "hidden-30-heads-4": dict(hidden_size=30),
    "layers-0": dict(num_hidden_layers=0), "layers-negative": dict(num_hidden_layers=-1),
    "heads-0": dict(num_attention_heads=0), "no-model-type": dict(model_type=...), "hidden-bool": dict(hidden_size=True),
    "vocab-negative": dict(vocab_size=-5), "layers-float": dict(num_hidden_layers=2.5),
    "positions-string": dict(max_position_embeddings="64"),
}
for name, changes in CONFIGS.items():
    case(f"params-config[{name}]")(lambda w, s, c=changes: params(w, "lora", config_file(w, s, **c)))
case("params-config[list]")(lambda w, s: params(w, "lora", put(s, "config.json", "[1, 2]")))
case("params-config[not-utf8]")(lambda w, s: params(w, "lora", put(s, "config.json", b'{"model_type": "bert\xff"}')))
case("params-config[empty]")(lambda w, s: params(w, "lora", put(s, "config.json", "")))
case("params-config[folder-list]")(lambda w, s: params(w, "lora", model_copy(w, s, raw=b"[]")))
case("params-config[folder-unknown-type]")(lambda w, s: params(w, "lora", model_copy(w, s, lambda c: {**c, "model_type": "zzz"})))
case("params-config[folder-not-utf8]")(lambda w, s: params(w, "lora", model_copy(w, s, raw=b"\xff\xfe{}")))
case("params-config[folder-without-config]")(lambda w, s: params(w, "lora", (s / "empty").mkdir() or s / "empty"))
case("params-model-missing-folder")(lambda w, s: params(w, "lora", s / "no-such-model"))
case("params-model-text-file")(lambda w, s: params(w, "lora", put(s, "model.txt", "hello")))
case("params-num-labels-0")(lambda w, s: params(w, "lora", None, "--num-labels", "0"))
case("params-num-labels-negative")(lambda w, s: params(w, "lora", None, "--num-labels", "-3"))
case("params-head-bogus")(lambda w, s: params(w, "lora", None, "--head", "bogus"))
case("params-num-labels-text")(lambda w, s: params(w, "lora", None, "--num-labels", "two"))
case("params-missing-design")(lambda w, s: ["params", "--model", str(w.model)])
case("unknown-command")(lambda w, s: ["trian", "--model", str(w.model)])

# --- train: options ---------------------------------------------------------------------------------------
for flag, value in (("--max-length", "100000"), ("--max-length", "0"), ("--epochs", "0"), ("--epochs", "-1"),
                    ("--epochs", "nan"), ("--lr", "inf"), ("--lr", "nan"), ("--lr", "-1"), ("--batch-size", "0"),
                    ("--warmup-ratio", "1.5"), ("--weight-decay", "-1"), ("--eval-steps", "0"), ("--max-steps", "0"),
                    ("--train-limit", "0"), ("--eval-limit", "-1"), ("--seed", "-1"), ("--epochs", "lots"),
                    ("--report-to", "carrier-pigeon")):
    case(f"train-option[{flag}={value}]")(lambda w, s, f=flag, v=value: train(w, s, f, v))
case("train-output-is-a-file")(lambda w, s: [*train(w, s), "--output", str(put(s, "taken", "x"))])
case("train-output-not-empty")(lambda w, s: [*train(w, s), "--output", str(put(s, "busy/notes.txt", "x").parent)])
case("train-output-inside-data")(lambda w, s: [*train(w, s, data=w.copy(w.glue, s / "g")), "--output", str(s / "g" / "run")])
case("train-output-inside-model")(lambda w, s: [*train(w, s, model=w.copy(w.model, s / "m")), "--output", str(s / "m" / "r")])
case("train-output-is-the-data")(lambda w, s: [*train(w, s, data=w.copy(w.glue, s / "g")), "--output", str(s / "g")])
case("train-model-pickle-only")(lambda w, s: train(w, s, model=w.pickle_model))
case("train-model-missing")(lambda w, s: train(w, s, model=s / "nowhere"))
case("train-model-config-list")(lambda w, s: train(w, s, model=model_copy(w, s, raw=b"[]")))
case("train-model-hidden-30")(lambda w, s: train(w, s, model=model_copy(w, s, lambda c: {**c, "hidden_size": 30})))
case("train-model-unknown-type")(lambda w, s: train(w, s, model=model_copy(w, s, lambda c: {**c, "model_type": "zzz"})))
case("train-design-preset")(lambda w, s: train(w, s, design="lora:r=0"))
case("train-design-not-utf8")(lambda w, s: train(w, s, design=str(put(s, "d.yaml", NOT_UTF8))))
case("train-design-list")(lambda w, s: train(w, s, design=str(put(s, "d.yaml", "- 1\n"))))
case("train-task-bogus")(lambda w, s: train(w, s, task="sst3"))
case("train-data-is-a-file")(lambda w, s: train(w, s, data=w.glue / "SST-2" / "train.tsv"))
case("train-data-missing")(lambda w, s: train(w, s, data=s / "nodata"))
case("train-design-auto-too-short")(lambda w, s: train(w, s, design="auto:budget=lots"))
case("train-design-r-true")(lambda w, s: train(w, s, design="lora:r=true"))


# --- train: data files --------------------------------------------------------------------------------
def text_data(s: Path, train_rows: str | bytes, dev_rows: str | None = None) -> Path:
    put(s, "t/train.jsonl", train_rows)
    put(s, "t/dev.jsonl", dev_rows if dev_rows is not None else jsonl({"text": "a", "label": "x"}, {"text": "b", "label": "y"}))
    return s / "t"


TEXT_TRAIN = {
    "label-list": jsonl({"text": "a", "label": "x"}, {"text": "b", "label": ["y"]}),
    "label-object": jsonl({"text": "a", "label": "x"}, {"text": "b", "label": {"y": 1}}),
    "text-object": jsonl({"text": "a", "label": "x"}, {"text": {"t": "b"}, "label": "y"}),
    "text-list": jsonl({"text": "a", "label": "x"}, {"text": ["b"], "label": "y"}),
    "text-pair-object": jsonl({"text": "a", "label": "x"}, {"text": "b", "text_pair": {"p": 1}, "label": "y"}),
    "label-null": jsonl({"text": "a", "label": "x"}, {"text": "b", "label": None}),
    "one-label": jsonl({"text": "a", "label": "x"}, {"text": "b", "label": "x"}),
    "not-utf8": b'{"text": "caf\xe9", "label": "x"}\n',
    "line-is-list": jsonl({"text": "a", "label": "x"}, ["b", "y"]),
    "bad-json": '{"text": "a", "label": "x"}\n{"text": "b", "label": \n',
    "empty": "",
    "label-nan": '{"text": "a", "label": "x"}\n{"text": "b", "label": NaN}\n',
}
for name, rows in TEXT_TRAIN.items():
    case(f"train-text[{name}]")(lambda w, s, r=rows: train(w, s, task="text", data=text_data(s, r)))
case("train-text[dev-label-unseen]")(lambda w, s: train(w, s, task="text", data=text_data(
    s, jsonl({"text": "a", "label": "x"}, {"text": "b", "label": "y"}), jsonl({"text": "c", "label": "z"}))))


def squad_data(w: World, s: Path, fn) -> Path:
    folder = w.copy(w.squad, s / "sq")
    for name in ("train-v1.1.json", "dev-v1.1.json"):
        data = json.loads((folder / name).read_text())
        (folder / name).write_text(json.dumps(fn(data)))
    return folder


ANSWER = "data.0.paragraphs.0.qas.1.answers.0"
SQUAD = {
    "answer-start-mismatch": (f"{ANSWER}.answer_start", 4), "answer-start-negative": (f"{ANSWER}.answer_start", -1),
    "answer-start-string": (f"{ANSWER}.answer_start", "13"), "answer-start-bool": (f"{ANSWER}.answer_start", True),
    "answer-text-number": (f"{ANSWER}.text", 5), "answer-past-end": (f"{ANSWER}.answer_start", 40),
    "context-list": ("data.0.paragraphs.0.context", ["x"]), "qas-object": ("data.0.paragraphs.0.qas", {}),
    "question-null": ("data.0.paragraphs.0.qas.0.question", None),
}
for name, (where, value) in SQUAD.items():
    case(f"train-squad[{name}]")(lambda w, s, p=where, v=value: train(
        w, s, task="squad", data=squad_data(w, s, lambda d: edit(d, p, v)), design="bitfit"))
case("train-squad[not-utf8]")(lambda w, s: train(w, s, task="squad", data=(
    w.copy(w.squad, s / "sq"), put(s, "sq/dev-v1.1.json", b"\xff\xfe{}"))[0]))
case("train-sst2[label-2]")(lambda w, s: train(w, s, data=(w.copy(w.glue, s / "g"), put(
    s, "g/SST-2/train.tsv", "sentence\tlabel\ngood film\t1\nbad\t2\n"))[0]))
case("train-stsb[score-text]")(lambda w, s: train(w, s, task="stsb", data=(w.copy(w.glue, s / "g"), put(
    s, "g/STS-B/train.tsv", (w.glue / "STS-B/train.tsv").read_text().replace("\t2.5\n", "\tabc\n", 1)))[0]))
case("train-stsb[score-nan]")(lambda w, s: train(w, s, task="stsb", data=(w.copy(w.glue, s / "g"), put(
    s, "g/STS-B/train.tsv", (w.glue / "STS-B/train.tsv").read_text().replace("\t2.5\n", "\tnan\n", 1)))[0]))

# --- eval: adapter folders -------------------------------------------------------------------------------
INFO = {
    "list": lambda d: [d], "format": lambda d: {**d, "format": "peft"}, "design-string": lambda d: {**d, "design": "lora"},
    "dtype-bogus": lambda d: {**d, "dtype": "float77"}, "dtype-number": lambda d: {**d, "dtype": 5},
    "dtype-object": lambda d: {**d, "dtype": "Tensor"},
    "id2label-list": lambda d: edit(d, "base_config.id2label", ["a", "b"]),
    "id2label-keys": lambda d: edit(d, "base_config.id2label", {"x": "a", "y": "b"}),
    "model-class": lambda d: {**d, "model_class": "os.system"}, "base-missing": lambda d: {**d, "base_model_name_or_path": "/no/such/model"},
    "version-99": lambda d: {**d, "format_version": 99}, "rank-huge": lambda d: edit(d, "design.groups.0.strategies.0.r", 10**9),
    "layers-past-depth": lambda d: edit(d, "design.groups.0.last", 7), "base-config-list": lambda d: {**d, "base_config": [1]},
    "sha-missing": lambda d: {k: v for k, v in d.items() if k != "sha256"}, "sha-wrong": lambda d: {**d, "sha256": "0" * 64},
    "base-pickle": None,
}
for name, fn in INFO.items():
    if fn is not None:
        case(f"eval-design-json[{name}]")(lambda w, s, f=fn: evaluate(w, adapter_copy(w, s, f)))
case("eval-design-json[groups-not-list]")(lambda w, s: evaluate(w, adapter_copy(
    w, s, lambda d: edit(d, "design.groups", 3))))
case("eval-design-json[design-null]")(lambda w, s: evaluate(w, adapter_copy(w, s, lambda d: {**d, "design": None})))
case("eval-design-json[version-bool]")(lambda w, s: evaluate(w, adapter_copy(w, s, lambda d: {**d, "format_version": True})))
case("eval-design-json[base-pickle]")(lambda w, s: evaluate(w, adapter_copy(
    w, s, lambda d: {**d, "base_model_name_or_path": str(w.pickle_model)})))
case("eval-design-json[not-utf8]")(lambda w, s: evaluate(w, (adapter_copy(w, s), put(s, "ad/design.json", b"\xff{"))[0]))
case("eval-design-json[empty]")(lambda w, s: evaluate(w, (adapter_copy(w, s), put(s, "ad/design.json", ""))[0]))
case("eval-tensors[nan]")(lambda w, s: evaluate(w, adapter_copy(w, s, tensors=lambda t: {k: v * float("nan") for k, v in t.items()})))
case("eval-tensors[inf]")(lambda w, s: evaluate(w, adapter_copy(w, s, tensors=lambda t: {k: v / 0 for k, v in t.items()})))
case("eval-tensors[one-nan]")(lambda w, s: evaluate(w, adapter_copy(w, s, tensors=lambda t: {
    k: (v.clone().fill_(float("nan")) if i == 0 else v) for i, (k, v) in enumerate(sorted(t.items()))})))
case("eval-tensors[missing-one]")(lambda w, s: evaluate(w, adapter_copy(w, s, tensors=lambda t: dict(sorted(t.items())[1:]))))
case("eval-tensors[wrong-shape]")(lambda w, s: evaluate(w, adapter_copy(w, s, tensors=lambda t: {k: v[..., :1].contiguous() for k, v in t.items()})))
case("eval-tensors[garbage]")(lambda w, s: evaluate(w, adapter_copy(w, s, info=lambda d: {**d, "sha256": __import__(
    "hashlib").sha256(b"junk").hexdigest()}) and (put(s, "ad/adapter.safetensors", b"junk"), s / "ad")[1]))
case("eval-depth[4-layer-adapter-on-8-layer-model]")(lambda w, s: evaluate(w, w.adapter, "--model", str(w.model8)))
case("eval-depth[8-layer-adapter-on-4-layer-model]")(lambda w, s: evaluate(w, w.adapter8, "--model", str(w.model)))
case("eval-pickle[adapter-bin-only]")(lambda w, s: evaluate(w, (adapter_copy(w, s), (s / "ad/adapter.safetensors").unlink(),
                                                               w.trap(s / "ad/adapter.bin"))[0]))
case("eval-pickle[adapter-is-a-pickle]")(lambda w, s: evaluate(w, w.trap(s / "adapter.pt")))
case("eval-pickle[model]")(lambda w, s: evaluate(w, w.adapter, "--model", str(w.pickle_model)))
for flag, value in (("--limit", "0"), ("--split", "bogus"), ("--max-length", "0"), ("--max-length", "100000")):
    case(f"eval-option[{flag}={value}]")(lambda w, s, f=flag, v=value: evaluate(w, w.adapter, f, v))
case("eval-task[regression-on-classifier]")(lambda w, s: evaluate(w, w.adapter, task="stsb"))
case("eval-task[squad-on-classifier]")(lambda w, s: ["eval", "-a", str(w.adapter), "-t", "squad", "--data-dir", str(w.squad)])
case("eval-adapter-missing")(lambda w, s: evaluate(w, s / "nothing"))
case("eval-adapter-is-peft")(lambda w, s: evaluate(w, w.peft))

# --- predict ------------------------------------------------------------------------------------------------
case("predict-output-is-the-input")(lambda w, s: [*predict(w, s), "--output", str(s / "in.jsonl")])
case("predict-output-is-a-folder")(lambda w, s: [*predict(w, s), "--output", str((s / "o").mkdir() or s / "o")])
case("predict-output-replaces-design-json")(lambda w, s: [*predict(w, s, adapter_copy(w, s)), "-o", str(s / "ad/design.json")])
case("predict-output-inside-adapter")(lambda w, s: [*predict(w, s, adapter_copy(w, s)), "-o", str(s / "ad/preds.jsonl")])
case("predict-output-exists")(lambda w, s: [*predict(w, s), "--output", str(put(s, "old.jsonl", "keep me\n"))])
PREDICT_ROWS = {
    "text-object": jsonl({"text": {"a": 1}}), "text-list": jsonl({"text": ["a"]}), "text-number": jsonl({"text": 5}),
    "text-null": jsonl({"text": None}), "pair-object": jsonl({"text": "a", "text_pair": {"b": 1}}),
    "line-list": jsonl(["good"]), "not-utf8": b'{"text": "caf\xe9"}\n', "empty": "", "no-text": jsonl({"sentence": "x"}),
    "mixed-pairs": jsonl({"text": "a", "text_pair": "b"}, {"text": "c"}), "bad-json": '{"text": \n',
    "id-object": jsonl({"text": "a", "id": {"x": 1}}), "text-bool": jsonl({"text": True}),
}
for name, rows in PREDICT_ROWS.items():
    case(f"predict-input[{name}]")(lambda w, s, r=rows: predict(w, s, None, r))
case("predict-input-missing")(lambda w, s: ["predict", "-a", str(w.adapter), "-i", str(s / "none.jsonl")])
case("predict-input-txt")(lambda w, s: ["predict", "-a", str(w.adapter), "-i", str(put(s, "in.txt", "good film\n"))])
case("predict-max-length-huge")(lambda w, s: predict(w, s, None, None, "--max-length", "100000"))
case("predict-adapter-nan")(lambda w, s: predict(w, s, adapter_copy(w, s, tensors=lambda t: {k: v * float("nan") for k, v in t.items()})))
case("predict-model-pickle")(lambda w, s: predict(w, s, None, None, "--model", str(w.pickle_model)))
case("predict-depth-mismatch")(lambda w, s: predict(w, s, None, None, "--model", str(w.model8)))

# --- merge -------------------------------------------------------------------------------------------------
case("merge-output-is-the-adapter")(lambda w, s: ["merge", "-a", str(adapter_copy(w, s)), "-o", str(s / "ad")])
case("merge-output-inside-adapter")(lambda w, s: ["merge", "-a", str(adapter_copy(w, s)), "-o", str(s / "ad" / "m")])
case("merge-output-is-a-file")(lambda w, s: ["merge", "-a", str(w.adapter), "-o", str(put(s, "f", "x"))])
case("merge-output-not-empty")(lambda w, s: ["merge", "-a", str(w.adapter), "-o", str(put(s, "o/x", "x").parent)])
case("merge-base-pickle")(lambda w, s: ["merge", "-a", str(w.adapter), "-o", str(s / "o"), "--base", str(w.pickle_model)])
case("merge-base-missing")(lambda w, s: ["merge", "-a", str(w.adapter), "-o", str(s / "o"), "--base", str(s / "nope")])
case("merge-base-deeper")(lambda w, s: ["merge", "-a", str(w.adapter), "-o", str(s / "o"), "--base", str(w.model8)])
case("merge-adapter-nan")(lambda w, s: ["merge", "-a", str(adapter_copy(w, s, tensors=lambda t: {k: v * float("nan") for k, v in t.items()})),
                                        "-o", str(s / "o")])
case("merge-adapter-pickle")(lambda w, s: ["merge", "-a", str(w.trap(s / "a.bin")), "-o", str(s / "o")])
case("merge-output-is-the-base")(lambda w, s: ["merge", "-a", str(w.adapter), "-o", str(s / "m"), "--base", str(w.copy(w.model, s / "m"))])

# --- export-peft / import-peft ----------------------------------------------------------------------------------
case("export-output-is-the-adapter")(lambda w, s: ["export-peft", "-a", str(adapter_copy(w, s)), "-o", str(s / "ad")])
case("export-output-inside-adapter")(lambda w, s: ["export-peft", "-a", str(adapter_copy(w, s)), "-o", str(s / "ad/p")])
case("export-output-is-a-file")(lambda w, s: ["export-peft", "-a", str(w.adapter), "-o", str(put(s, "f", "x"))])
case("export-output-not-empty")(lambda w, s: ["export-peft", "-a", str(w.adapter), "-o", str(put(s, "o/x", "x").parent)])
case("export-bitfit")(lambda w, s: ["export-peft", "-a", str(w.bitfit), "-o", str(s / "o")])
case("export-adapter-missing")(lambda w, s: ["export-peft", "-a", str(s / "none"), "-o", str(s / "o")])
case("export-design-json-list")(lambda w, s: ["export-peft", "-a", str(adapter_copy(w, s, lambda d: [d])), "-o", str(s / "o")])
case("export-adapter-nan")(lambda w, s: ["export-peft", "-a", str(adapter_copy(
    w, s, tensors=lambda t: {k: v * float("nan") for k, v in t.items()})), "-o", str(s / "o")])
case("import-output-is-the-input")(lambda w, s: ["import-peft", "-a", str(peft_copy(w, s)), "-o", str(s / "peft")])
case("import-output-inside-input")(lambda w, s: ["import-peft", "-a", str(peft_copy(w, s)), "-o", str(s / "peft/l")])
case("import-output-is-a-file")(lambda w, s: ["import-peft", "-a", str(w.peft), "-o", str(put(s, "f", "x"))])
PEFT_CONFIGS = {
    "list": lambda c: [c], "task-type": lambda c: {**c, "task_type": "TELEPATHY"}, "ia3": lambda c: {**c, "peft_type": "IA3"},
    "r-0": lambda c: {**c, "r": 0}, "r-string": lambda c: {**c, "r": "eight"}, "targets-number": lambda c: {**c, "target_modules": 5},
    "alpha-string": lambda c: {**c, "lora_alpha": "x"}, "base-pickle": None, "base-missing": lambda c: {**c, "base_model_name_or_path": "/nope"},
    "dropout-2": lambda c: {**c, "lora_dropout": 2.0},
}
for name, fn in PEFT_CONFIGS.items():
    if fn is not None:
        case(f"import-config[{name}]")(lambda w, s, f=fn: ["import-peft", "-a", str(peft_copy(w, s, f)), "-o", str(s / "o")])
case("import-config[not-utf8]")(lambda w, s: ["import-peft", "-a", str(peft_copy(w, s, raw=b"\xff{}")), "-o", str(s / "o")])
case("import-config[base-pickle]")(lambda w, s: ["import-peft", "-a", str(w.peft), "-o", str(s / "o"), "--base", str(w.pickle_model)])
case("import-weights-pickle")(lambda w, s: ["import-peft", "-a", str((peft_copy(w, s), (s / "peft/adapter_model.safetensors").unlink(),
                                                                     w.trap(s / "peft/adapter_model.bin"))[0]), "-o", str(s / "o")])


def peft_nan(w: World, s: Path) -> Path:
    import safetensors.torch

    folder = peft_copy(w, s)
    values = safetensors.torch.load_file(str(folder / "adapter_model.safetensors"))
    safetensors.torch.save_file({k: v * float("nan") for k, v in values.items()}, str(folder / "adapter_model.safetensors"))
    return folder


case("import-weights-nan")(lambda w, s: ["import-peft", "-a", str(peft_nan(w, s)), "-o", str(s / "o")])
case("import-base-deeper")(lambda w, s: ["import-peft", "-a", str(w.peft), "-o", str(s / "o"), "--base", str(w.model8)])

# --- search ----------------------------------------------------------------------------------------------------
SPACES = {"not-utf8": NOT_UTF8, "list": "- grouping\n", "unknown-key": "colour: red\n", "groups-0": "groups: 0\n",
          "scalar": "spindle\n", "grouping-bogus": "grouping: [spiral]\n", "budget-words": "budget: lots\n"}
for name, content in SPACES.items():
    case(f"search-space[{name}]")(lambda w, s, c=content: search(w, s, "--space", str(put(s, "space.yaml", c))))
case("search-space-missing")(lambda w, s: search(w, s, "--space", str(s / "none.yaml")))
for flag, value in (("--budget", "lots"), ("--workers", "0"), ("--heartbeat", "0"), ("--trials-per-stage", "0"),
                    ("--max-length", "100000"), ("--epochs", "0"), ("--reduction-factor", "1"), ("--storage", "bogus://x"),
                    ("--batch-size", "0"), ("--lr", "nan"), ("--train-limit", "0")):
    case(f"search-option[{flag}={value}]")(lambda w, s, f=flag, v=value: search(w, s, f, v))
case("search-storage-not-a-database")(lambda w, s: search(w, s, "--storage", str(put(s, "notes.db", "not sqlite"))))
case("search-output-is-a-file")(lambda w, s: [*search(w, s), "--output", str(put(s, "f", "x"))])
case("search-output-inside-model")(lambda w, s: [*search(w, s, model=w.copy(w.model, s / "m")), "--output", str(s / "m/o")])
case("search-model-pickle")(lambda w, s: search(w, s, model=w.pickle_model))
case("search-model-config-list")(lambda w, s: search(w, s, model=model_copy(w, s, raw=b"[]")))
case("search-task-bogus")(lambda w, s: [*search(w, s), "--task", "sst3"])
case("search-data-missing")(lambda w, s: search(w, s, data=s / "nodata"))

# --- report -----------------------------------------------------------------------------------------------------
RECORDS = {"not-utf8": b"\xff{", "list": "[]", "stages-missing-keys": {"stages": [{}]}, "stages-not-list": {"stages": 3},
           "empty": "", "trials-missing": None, "stage-missing-component": None}
for name, content in RECORDS.items():
    if content is not None:
        case(f"report-record[{name}]")(lambda w, s, c=content: ["report", str(put(s, "r/search.json", c).parent), "-o", str(s / "rep")])


def record_edit(w: World, s: Path, fn) -> Path:
    data = json.loads((w.record / "search.json").read_text())
    return put(s, "r/search.json", fn(data)).parent


case("report-record[trials-missing]")(lambda w, s: ["report", str(record_edit(w, s, lambda d: edit(d, "stages.0", {
    k: v for k, v in d["stages"][0].items() if k != "trials"}))), "-o", str(s / "rep")])
case("report-record[stage-missing-component]")(lambda w, s: ["report", str(record_edit(w, s, lambda d: edit(d, "stages.1", {
    k: v for k, v in d["stages"][1].items() if k != "component"}))), "-o", str(s / "rep")])
case("report-record[score-string]")(lambda w, s: ["report", str(record_edit(
    w, s, lambda d: edit(d, "stages.0.trials.0.value", "high"))), "-o", str(s / "rep")])
case("report-input-missing")(lambda w, s: ["report", str(s / "none"), "-o", str(s / "rep")])
case("report-output-is-a-file")(lambda w, s: ["report", str(w.record), "-o", str(put(s, "f", "x"))])
case("report-output-is-the-input")(lambda w, s: ["report", str(w.copy(w.record, s / "r")), "-o", str(s / "r")])
case("report-output-inside-input")(lambda w, s: ["report", str(w.copy(w.record, s / "r")), "-o", str(s / "r/rep")])
case("report-storage-bogus")(lambda w, s: ["report", "study", "--storage", "bogus://x", "-o", str(s / "rep")])

# --- suggest -----------------------------------------------------------------------------------------------------
def suggest(w, s, *extra, model=None):
    return ["suggest", "--model", str(model or w.model), "--task", "sst2", "--data-dir", str(w.glue),
            "--output", str(s / "sg"), "--max-length", "16", "--batch-size", "8", "--probe-steps", "2", *extra]


for flag, value in (("--budget", "lots"), ("--budget", "0"), ("--budget", "-3%"), ("--methods", "lora+dora"),
                    ("--methods", ""), ("--signal", "vibes"), ("--prior", "astrology"), ("--max-length", "100000"),
                    ("--probe-steps", "0"), ("--batch-size", "0"), ("--for-steps", "-1"), ("--train-limit", "0"),
                    ("--seed", "-1")):
    case(f"suggest-option[{flag}={value}]")(lambda w, s, f=flag, v=value: suggest(w, s, f, v))
case("suggest-output-is-a-file")(lambda w, s: [*suggest(w, s), "--output", str(put(s, "f", "x"))])
case("suggest-output-not-empty")(lambda w, s: [*suggest(w, s), "--output", str(put(s, "o/x", "x").parent)])
case("suggest-output-inside-model")(lambda w, s: [*suggest(w, s, model=w.copy(w.model, s / "m")), "--output", str(s / "m/sg")])
case("suggest-model-pickle")(lambda w, s: suggest(w, s, model=w.pickle_model))
case("suggest-model-config-list")(lambda w, s: suggest(w, s, model=model_copy(w, s, raw=b"[]")))
case("suggest-task-bogus")(lambda w, s: [*suggest(w, s), "--task", "sst3"])
case("suggest-data-missing")(lambda w, s: [*suggest(w, s), "--data-dir", str(s / "nodata")])
case("suggest-text-label-list")(lambda w, s: [*suggest(w, s), "--task", "text", "--data-dir", str(text_data(
    s, TEXT_TRAIN["label-list"]))])

# --- demo --------------------------------------------------------------------------------------------------------
case("demo-output-is-a-file")(lambda w, s: ["demo", "--no-progress", "-o", str(put(s, "f", "x"))])
case("demo-output-not-empty")(lambda w, s: ["demo", "--no-progress", "-o", str(put(s, "o/x", "x").parent)])
for flag, value in (("--epochs", "0"), ("--lr", "-1"), ("--lr", "nan"), ("--train-limit", "0"), ("--epochs", "inf")):
    case(f"demo-option[{flag}={value}]")(lambda w, s, f=flag, v=value: ["demo", "--no-progress", "-o", str(s / "o"), f, v])


# --- the test ------------------------------------------------------------------------------------------------------
def test_enough_cases():
    assert len(CASES) >= 150


@pytest.mark.parametrize("bad", CASES)
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(bad: Case, world: World, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.chdir(scratch)  # default output folders (runs/...) would land here
    argv = [str(a) for a in bad.argv(world, scratch)]
    before = snapshot(world.root, scratch)
    result = runner.invoke(app, argv)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (result.exit_code, result.output[-3000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    assert "Traceback" not in result.output
    assert snapshot(world.root, scratch) == before, "the command created or changed files"
    assert not world.marker.exists(), "a pickle was unpickled"
