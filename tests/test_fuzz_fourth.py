"""The fourth outside corpus (issue 14, /work/fuzz6: 321 cases written from the docs alone) found these
after the first three were answered: SQLite stores in a missing folder, in someone else's database or
inside the data, numbers too large for an integer, an exported DoRA adapter without its magnitudes, a
suggestion over a tokenizer larger than the model, a budget below every cell, and a non-float weight.
Each ends like the earlier corpora: exit code 2, one `error:` line, nothing created or changed.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_world import WORDS, World, _save_adapter, put  # noqa: E402
from test_fuzz_fresh import answered_cleanly, params, search, suggest, train  # noqa: E402
from test_fuzz_third import model_copy, sst2, with_weights  # noqa: E402

CASES: dict[str, object] = {}


def foreign_db(s: Path) -> Path:
    """Someone's application database: Optuna would add its 14 tables beside theirs."""
    path = s / "other.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT)")
    connection.execute("INSERT INTO accounts (name) VALUES ('ada')")
    connection.commit()
    connection.close()
    return path


def dora_without_magnitudes(w: World, s: Path) -> Path:
    """A DoRA adapter whose magnitude vectors were dropped, its checksum made valid again."""
    from lamina import io as lamina_io

    folder = _save_adapter(w.model, "lora:r=2,dora=true", s / "ad")
    tensors = {k: v for k, v in load_file(str(folder / "adapter.safetensors")).items() if not k.endswith(".magnitude")}
    save_file(tensors, str(folder / "adapter.safetensors"))
    w.edit_json(folder / "design.json", lambda d: {**d, "sha256": lamina_io._sha256(folder / "adapter.safetensors")})
    return folder


def int_weight(tensors: dict) -> dict:
    key = next(k for k in sorted(tensors) if k.endswith("output.dense.weight"))
    tensors[key] = (tensors[key] * 100).to(torch.int64)
    return tensors


def sparse_ids(w: World, s: Path) -> Path:
    """A tokenizer of as many tokens as the model has rows, but with the data's words at ids 5000+: the
    token count passes, the ids do not (the embedding has a few hundred rows)."""
    folder = w.copy(w.model, s / "m")

    def move(t: dict) -> dict:
        for i, word in enumerate(WORDS):
            if word in t["model"]["vocab"]:
                t["model"]["vocab"][word] = 5000 + i
        return t
    w.edit_json(folder / "tokenizer.json", move)
    return folder


def hard_link(s: Path) -> list[str]:
    """predict's input and, as --output, a hard link to it: the same file under another name."""
    source = put(s, "in.jsonl", '{"text": "good film"}\n')
    os.link(source, s / "out.jsonl")
    return ["-i", str(source), "-o", str(s / "out.jsonl"), "--overwrite"]


def record_with(w: World, s: Path, field: str, value) -> Path:
    """The world's real search record with every trial's `field` set to `value`."""
    import json

    record = json.loads((w.record / "search.json").read_text())
    for stage in record["stages"]:
        for trial in stage["trials"]:
            trial[field] = value
    return put(s, "r/search.json", json.dumps(record)).parent


def fifo(s: Path) -> Path:
    os.mkfifo(s / "design.yaml")
    return s / "design.yaml"


LONG = "a" * 300  # one path component beyond the 255 bytes file systems allow: ENAMETOOLONG


CASES.update({
    "search[--storage=sqlite-missing-folder]": lambda w, s: search(w, s, "--storage", f"sqlite:///{s / 'no' / 'dir' / 's.db'}"),
    "search[--storage=bare-path-missing-folder]": lambda w, s: search(w, s, "--storage", str(s / "no" / "s.db")),
    "search[--storage=foreign-sqlite]": lambda w, s: search(w, s, "--storage", str(foreign_db(s))),
    "search[--storage=inside-data-dir]": lambda w, s: search(w, s, "--storage", str(w.glue / "search.db")),
    # integers beyond what loaders and tensors can index
    "train[--batch-size=1e23]": lambda w, s: train(w, s, "--batch-size", "99999999999999999999999"),
    "train[--max-length=2**40]": lambda w, s: train(w, s, "--max-length", str(2**40)),
    "search[--batch-size=2**40]": lambda w, s: search(w, s, "--batch-size", str(2**40)),
    "search[--train-limit=2**64]": lambda w, s: search(w, s, "--train-limit", str(2**64)),
    "search[--threads=2**64]": lambda w, s: search(w, s, "--threads", str(2**64)),  # was an overflow in torch
    "search[--workers=100000]": lambda w, s: search(w, s, "--workers", "100000"),  # would start 10^5 processes
    # adapters, models and designs that do not fit together
    "export-peft[dora-without-magnitudes]": lambda w, s: ["export-peft", "-a", str(dora_without_magnitudes(w, s)),
                                                          "-o", str(s / "peft")],
    "suggest[tokenizer-ids-beyond-embeddings]": lambda w, s: suggest(w, s)[:2] + [str(sparse_ids(w, s))] + suggest(w, s)[3:],
    "search[one-shot-budget-3]": lambda w, s: search(w, s, "--strategy", "one-shot", "--budget", "3"),
    "train[weights-int64]": lambda w, s: sst2(with_weights(w, s, int_weight), w, s),
    "params[design-fifo]": lambda w, s: params(w, str(fifo(s))),
    "report[trial-score-string]": lambda w, s: ["report", str(record_with(w, s, "score", "high")), "-o", str(s / "rep")],
    "report[trial-trainable-negative]": lambda w, s: ["report", str(record_with(w, s, "trainable", -5)), "-o", str(s / "rep")],
    # PiSSA / OLoRA / CorDA / LoftQ adapters only fit the changed base they trained against (PEFT converts them
    # to plain LoRA on request, which also sets init_lora_weights back to true)
    **{f"import-peft[init={init}]": (lambda init=init: lambda w, s: ["import-peft", "-a", str(w.edit_json(
        w.copy(w.peft, s / "pf") / "adapter_config.json", lambda c: {**c, "init_lora_weights": init}).parent),
        "-o", str(s / "ad")])() for init in ("pissa", "pissa_niter_4", "olora", "corda", "loftq")},
    "train[adapter-bottleneck-1e7]": lambda w, s: train(w, s, design="adapter:bottleneck=10000000"),  # 28 GB asked
    # config.json values transformers reads without checking (found while the fifth corpus was being written)
    **{f"train[config-{key}={value}]": (lambda key=key, value=value: lambda w, s: sst2(w.edit_json(
        model_copy(w, s) / "config.json", lambda c: {**c, key: value}).parent, w, s))()
       for key, value in (("hidden_act", "swishy"), ("hidden_dropout_prob", 2.0), ("attention_probs_dropout_prob", -0.5),
                          ("layer_norm_eps", -1.0), ("dtype", "int8"))},
    "predict[--output=hard-link-to-input]": lambda w, s: ["predict", "-a", str(w.adapter), *hard_link(s)],
    # a path component longer than the file system allows (found while the fifth corpus was being written)
    "predict[--output=name-too-long]": lambda w, s: ["predict", "-a", str(w.adapter), "-i",
                                                     str(put(s, "in.jsonl", '{"text": "x"}\n')), "-o", str(s / LONG)],
    "params[--design=name-too-long]": lambda w, s: params(w, str(s / f"{LONG}.yaml")),
    "train[--data-dir=name-too-long]": lambda w, s: train(w, s)[:6] + [str(s / LONG)] + train(w, s)[7:],
    "eval[--adapter=name-too-long]": lambda w, s: ["eval", "-a", str(s / LONG), "--task", "sst2", "--data-dir", str(w.glue)],
    "search[--storage=name-too-long]": lambda w, s: search(w, s, "--storage", str(s / f"{LONG}.db")),
    "report[record=name-too-long]": lambda w, s: ["report", str(s / LONG), "-o", str(s / "rep")],
})


@pytest.mark.parametrize("flag,path,reason", [
    ("--train-file", "/dev/zero", "is not a regular file"), ("--train-file", "fifo", "is not a regular file"),
    ("--design", "fifo", "design file is not a regular file"), ("--train-file", "missing.jsonl", "file not found")])
def test_a_device_or_pipe_is_not_called_missing(flag, path, reason, world: World, tmp_path, monkeypatch):
    """/dev/zero or a named pipe given as a file exists: the message says what it is, not 'not found'."""
    from typer.testing import CliRunner

    from lamina.cli import app

    monkeypatch.chdir(tmp_path)
    os.mkfifo(tmp_path / "fifo")
    argv = ["train", "--model", str(world.model), "--task", "text", "--train-file", str(world.text / "dev.jsonl"),
            "--dev-file", str(world.text / "dev.jsonl"), "--design", "bitfit", "--output", str(tmp_path / "run")]
    argv[argv.index(flag) + 1] = path
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2 and reason in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()





@pytest.mark.parametrize("name", list(CASES))
def test_fourth_corpus_bad_input_is_answered_cleanly(name, world: World, tmp_path, monkeypatch):
    answered_cleanly(world, tmp_path, monkeypatch, CASES[name])


def test_an_optuna_store_is_still_opened(tmp_path):
    """The foreign-database check reads tables; a real study store (and an empty file) pass it."""
    import optuna

    from lamina.search import store

    url = store.storage_url(str(tmp_path / "s.db"), tmp_path)
    optuna.create_study(storage=store.open_storage(url), study_name="kept")
    assert optuna.load_study(storage=store.open_storage(url), study_name="kept").study_name == "kept"
    (tmp_path / "empty.db").touch()
    store.check_sqlite_file(f"sqlite:///{tmp_path / 'empty.db'}")


def test_hub_retry_warnings_are_quiet():
    """huggingface_hub logs one warning per retry of an unreachable Hub (12 lines before the error, found by
    the corpus); behind the boundary only errors show. A fresh process: logging state is global."""
    import subprocess

    code = ("import logging; from lamina.cli.boundary import guarded; "
            "guarded(lambda: logging.getLogger('huggingface_hub.utils._http').warning('Retrying in 1s [Retry 1/5].'))")
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_VERBOSITY"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Retrying" not in done.stderr


@pytest.mark.parametrize("argv,message", [(["eval", "--num-beams", "129"], "--num-beams must be at most 128"),
                                          (["predict", "--num-beams", "100000"], "--num-beams must be at most 128"),
                                          (["eval", "--max-new-tokens", "1000000000"], "--max-new-tokens must be at most")])
def test_generation_sizes_are_bounded_before_any_model_loads(argv, message, world: World, tmp_path, monkeypatch):
    """10^5 beams on a tiny Llama filled 24 GB before the kernel killed it; 10^9 new tokens on a T5 (no fixed
    context) that never says EOS ran until the timeout. Both refused up front (train checks the same)."""
    from typer.testing import CliRunner

    from lamina.cli import app
    from lamina.train import _check_options

    monkeypatch.chdir(tmp_path)
    extra = ["--task", "sst2", "--data-dir", str(world.glue)] if argv[0] == "eval" else \
        ["-i", str(put(tmp_path, "in.jsonl", '{"text": "x"}\n'))]
    result = CliRunner().invoke(app, [argv[0], "-a", str(world.adapter), *extra, *argv[1:]])
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    for key, bad, good in (("num_beams", 129, 128), ("max_new_tokens", 65_537, 65_536)):
        with pytest.raises(Exception, match=f"{key} must be at most"):
            _check_options(**{key: bad})
        _check_options(**{key: good})
