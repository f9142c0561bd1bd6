"""A third hostile corpus (issue 14), from the classes of bad input a fresh outside corpus still found
after the first two were answered: duplicate YAML keys, preset strings that cannot be file names,
deeply nested or mixed-kind data, tokenizers that do not fit the text or the model, weights that do not
fit their config (or hold NaN), a design.json pointing at another tensor file, an in-memory search
store, a bool where a space wants a count, and options given an empty path. Each ends like the first two
corpora: exit code 2, one `error:` line, no traceback, nothing created or changed, no pickle opened.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import transformers as T
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_world import WORDS, World, put  # noqa: E402
from test_fuzz_fresh import answered_cleanly, params, search, train  # noqa: E402

CASES: dict[str, object] = {}


def model_copy(w: World, s: Path, name: str = "m") -> Path:
    return w.copy(w.model, s / name)


def with_tokenizer(w: World, s: Path, vocab: list[str]) -> Path:
    """The world's model with a tokenizer over `vocab` (its tokenizer.json replaced)."""
    folder = model_copy(w, s)
    put(s, "vocab.txt", "\n".join(vocab) + "\n")
    T.BertTokenizerFast(vocab=str(s / "vocab.txt")).save_pretrained(folder)
    (s / "vocab.txt").unlink()
    return folder


def with_weights(w: World, s: Path, edit) -> Path:
    folder = model_copy(w, s)
    tensors = load_file(str(folder / "model.safetensors"))
    save_file(edit(tensors), str(folder / "model.safetensors"))
    return folder


def with_layers(w: World, s: Path, layers: int) -> Path:
    folder = model_copy(w, s)
    w.edit_json(folder / "config.json", lambda c: {**c, "num_hidden_layers": layers})
    return folder


def text_task(w: World, s: Path, rows: list | str, *extra) -> list:
    """Train on a text-classification file of `rows` (JSON lines; a string is written as it is)."""
    text = rows if isinstance(rows, str) else "".join(json.dumps(r) + "\n" for r in rows)
    return ["train", "--model", str(w.model), "--task", "text", "--train-file", str(put(s, "train.jsonl", text)),
            "--dev-file", str(w.text / "dev.jsonl"), "--design", "bitfit", "--output", str(s / "run"), *extra]


def sst2(model: Path, w: World, s: Path, *extra) -> list:
    return ["train", "--model", str(model), "--task", "sst2", "--data-dir", str(w.glue), "--design", "bitfit",
            "--output", str(s / "run"), *extra]


def nan_first(tensors: dict) -> dict:
    key = next(k for k in sorted(tensors) if "encoder" in k and tensors[k].is_floating_point())
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] = float("nan")
    return tensors


SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
GOOD_ROWS = [{"text": "good film", "label": "pos"}, {"text": "bad plot", "label": "neg"}] * 3  # as the world's dev.jsonl

CASES.update({
    # YAML mappings naming a key twice (plain YAML keeps the last value without a word)
    "design[duplicate-option]": lambda w, s: params(w, str(put(s, "d.yaml", "groups:\n  - layers: 0-1\n    strategies:\n"
                                                                         "      - lora:\n          r: 4\n          r: 8\n"))),
    "design[duplicate-groups]": lambda w, s: params(w, str(put(s, "d.yaml", "groups: [{layers: 0, strategies: [bitfit]}]\n"
                                                                        "groups: [{layers: 1, strategies: [bitfit]}]\n"))),
    "space[duplicate-budget]": lambda w, s: search(w, s, "--space", str(put(s, "sp.yaml", "budget: 1%\nbudget: 2%\n"))),
    # preset strings that are no file name at all
    "design[16kB-preset]": lambda w, s: params(w, "lora:" + "alpha=8," * 2000 + "r=4"),
    "design[nul-in-preset]": lambda w, s: params(w, "lora:r=4\x00"),
    # data
    "text[label-fraction]": lambda w, s: text_task(w, s, [{"text": "good film", "label": 0.5}] + GOOD_ROWS),
    "text[labels-number-and-bool]": lambda w, s: text_task(w, s, [{"text": "good", "label": 1}, {"text": "bad", "label": 0},
                                                                  {"text": "fine", "label": True}]),
    "text[labels-text-and-number]": lambda w, s: text_task(w, s, GOOD_ROWS + [{"text": "fine", "label": 1}]),
    "text[nested-50000]": lambda w, s: text_task(w, s, "[" * 50000 + "]" * 50000 + "\n"),
    "predict[nested-30000]": lambda w, s: ["predict", "-a", str(w.adapter), "-i", str(put(s, "in.jsonl", "[" * 30000 + "\n"))],
    # tokenizers
    "train[tokenizer-config-list]": lambda w, s: sst2(put(model_copy(w, s), "tokenizer_config.json", "[1, 2]").parent, w, s),
    "train[tokenizer-all-unknown]": lambda w, s: sst2(with_tokenizer(w, s, SPECIALS), w, s),
    "train[tokenizer-ids-beyond-embeddings]": lambda w, s: sst2(
        with_tokenizer(w, s, SPECIALS + [f"filler{i}" for i in range(100)] + WORDS), w, s),
    "train[--max-length=1]": lambda w, s: train(w, s, "--max-length", "1"),
    "train[--max-length=2]": lambda w, s: train(w, s, "--max-length", "2"),
    # weights that do not fit their config, or hold NaN
    "train[weights-nan]": lambda w, s: sst2(with_weights(w, s, nan_first), w, s),
    "train[config-deeper-than-weights]": lambda w, s: sst2(with_layers(w, s, 6), w, s),
    "train[config-shallower-than-weights]": lambda w, s: sst2(with_layers(w, s, 2), w, s),
    # found by the third outside corpus
    "params[config-layers-1e9]": lambda w, s: params(w, "lora")[:2] + [str(with_layers(w, s, 10**9))] + params(w, "lora")[3:],
    "train[config-pad-id-beyond-vocab]": lambda w, s: sst2(w.edit_json(model_copy(w, s) / "config.json",
                                                                       lambda c: {**c, "pad_token_id": 9999}).parent, w, s),
    "train[tokenizer-remote-code]": lambda w, s: sst2(w.edit_json(model_copy(w, s) / "tokenizer_config.json", lambda c: {
        **c, "auto_map": {"AutoTokenizer": ["mine.MyTokenizer", None]}}).parent, w, s),
    "train[tokenizer-larger-than-embeddings]": lambda w, s: sst2(
        with_tokenizer(w, s, SPECIALS + WORDS + [f"extra{i}" for i in range(100)]), w, s),
    "train[squad-window-smaller-than-stride]": lambda w, s: ["train", "--model", str(w.model), "--task", "squad",
                                                             "--data-dir", str(w.squad), "--design", "bitfit",
                                                             "--output", str(s / "run"), "--max-length", "12"],
    "search[tokenizer-json-cut-short]": lambda w, s: search(w, s)[:2] + [str(_cut_tokenizer(w, s))] + search(w, s)[3:],
    "eval[adapter-tensor-int32]": lambda w, s: ["eval", "-a", str(_int_adapter(w, s)), "--task", "sst2", "--data-dir", str(w.glue)],
    "report[strategy-unknown]": lambda w, s: ["report", str(put(s, "r/search.json", _record(w, s, "teleport")).parent),
                                              "-o", str(s / "rep")],
    "eval[tensor-file-elsewhere]": lambda w, s: ["eval", "-a", str(_retargeted(w, s)), "--task", "sst2", "--data-dir", str(w.glue)],
    # search store and space
    "search[--storage=sqlite-in-memory]": lambda w, s: search(w, s, "--storage", "sqlite://"),
    "search[--storage=sqlite-memory-file]": lambda w, s: search(w, s, "--storage", "sqlite:///:memory:"),
    "search[space-groups-true]": lambda w, s: search(w, s, "--space", str(put(s, "sp.yaml", "groups: true\n"))),
    "search[space-seed-float]": lambda w, s: search(w, s, "--space", str(put(s, "sp.yaml", "seed: 1.0\n"))),
    "search[space-train-head-string]": lambda w, s: search(w, s, "--space", str(put(s, "sp.yaml", "train_head: 'no'\n"))),
    "search[too-many-groups-with-prune-warning]": lambda w, s: search(w, s, "--strategy", "joint", "--space",
                                                                      str(put(s, "sp.yaml", "groups: 8\n"))),
    # an empty path (an unset shell variable) would mean the current folder
    "train[-o '']": lambda w, s: sst2(w.model, w, s)[:-2] + ["-o", ""],
    "train[--output=]": lambda w, s: sst2(w.model, w, s)[:-2] + ["--output="],
    "predict[-i '']": lambda w, s: ["predict", "-a", str(w.adapter), "-i", ""],
    "search[--storage '']": lambda w, s: search(w, s, "--storage", ""),
})


def _cut_tokenizer(w: World, s: Path) -> Path:
    folder = model_copy(w, s)
    text = (folder / "tokenizer.json").read_text()
    (folder / "tokenizer.json").write_text(text[: len(text) // 2])
    return folder


def _int_adapter(w: World, s: Path) -> Path:
    from lamina import io as lamina_io

    folder = w.copy(w.adapter, s / "adapter")
    tensors = load_file(str(folder / "adapter.safetensors"))
    key = sorted(k for k in tensors if k.endswith(".A"))[0]
    tensors[key] = tensors[key].to(__import__("torch").int32)
    save_file(tensors, str(folder / "adapter.safetensors"))
    w.edit_json(folder / "design.json", lambda d: {**d, "sha256": lamina_io._sha256(folder / "adapter.safetensors")})
    return folder


def _record(w: World, s: Path, strategy: str) -> dict:
    stage = {"index": 0, "component": "grouping", "analysis": "choice", "winner_label": "x", "trials": [], "stats": []}
    return {"study": "s", "strategy": strategy, "config": {"model": str(w.model), "tasks": ["sst2"], "space": {"budget": "1%"},
                                                           "trials_per_stage": 1, "epochs": 1.0, "max_length": 16},
            "stages": [stage]}


def _retargeted(w: World, s: Path) -> Path:
    folder = w.copy(w.adapter, s / "adapter")
    w.edit_json(folder / "design.json", lambda d: {**d, "tensor_file": "../outside.safetensors"})
    (s / "outside.safetensors").write_bytes((folder / "adapter.safetensors").read_bytes())
    return folder


@pytest.mark.parametrize("name", list(CASES))
def test_third_corpus_bad_input_is_answered_cleanly(name, world: World, tmp_path, monkeypatch):
    answered_cleanly(world, tmp_path, monkeypatch, CASES[name])


def test_the_checks_do_not_refuse_good_input(world: World, tmp_path, monkeypatch):
    """The same world, unharmed, trains: these checks refuse what is wrong, not what is unusual (labels all
    of one kind, a tokenizer with some unknown words, a model whose task head is new)."""
    from typer.testing import CliRunner

    from lamina.cli import app

    monkeypatch.chdir(tmp_path)
    rows = GOOD_ROWS + [{"text": "zebra quokka film", "label": "pos"}]  # unknown words, a minority
    result = CliRunner().invoke(app, text_task(world, tmp_path, rows, "--no-progress", "--epochs", "1", "--max-length", "3"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "adapter.safetensors").is_file()
