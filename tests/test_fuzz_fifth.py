"""The fifth outside corpus (issue 14, /work/fuzz7: 323 cases written from the docs alone, measured at 96.0 %
before any of it was read) found these: a SQuAD file nested too deeply, a prompt plus --max-length beyond the
model's positions, a design that trains nothing, a hand-edited results.json option read back into generate(),
one projection named twice under two names, SQLite side files left by a refused search, and a text folder with
both train.jsonl and train.csv. Each ends like the earlier corpora: exit 2, one `error:` line, nothing created.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_world import World, put  # noqa: E402
from test_fuzz_fresh import answered_cleanly, params, search, train  # noqa: E402

CASES: dict[str, object] = {}


def deep_squad(w: World, s: Path) -> Path:
    folder = w.copy(w.squad, s / "sq")
    (folder / "dev-v1.1.json").write_text("[" * 200_000 + "]" * 200_000)
    return folder


def results_option(w: World, s: Path, key: str, value) -> Path:
    """The world's adapter with a results.json whose recorded option `key` was edited by hand."""
    folder = w.copy(w.adapter, s / "ad")
    put(folder, "results.json", json.dumps({"task": "sst2", "options": {key: value}}))
    return folder


def wal_search(w: World, s: Path) -> Path:
    """An earlier search output whose study database is in WAL mode (as lamina writes it)."""
    import optuna

    from lamina.search import store

    out = s / "out"
    out.mkdir()
    storage = store.open_storage(f"sqlite:///{out / 'search.db'}")
    optuna.create_study(storage=storage, study_name="search")
    storage.engine.dispose()
    for side in ("search.db-wal", "search.db-shm"):
        (out / side).unlink(missing_ok=True)
    return out


def both_formats(w: World, s: Path) -> Path:
    folder = w.copy(w.text, s / "tx")
    put(folder, "train.csv", "text,label\ngood film,pos\nbad plot,neg\n")
    return folder


CASES.update({
    "train[squad-nested-200000]": lambda w, s: ["train", "--model", str(w.model), "--task", "squad", "--data-dir",
                                                str(deep_squad(w, s)), "--design", "bitfit", "-o", str(s / "run")],
    "train[prompt+max-length-beyond-positions]": lambda w, s: train(w, s, "--max-length", "60", design="prompt:length=20"),
    "train[design-trains-nothing]": lambda w, s: train(w, s, design=str(put(s, "d.yaml", "groups: []\ntrain_head: false\n"))),
    "predict[results-max-new-tokens-string]": lambda w, s: ["predict", "-a", str(results_option(w, s, "max_new_tokens", "many")),
                                                            "-i", str(put(s, "in.jsonl", '{"text": "x"}\n'))],
    "eval[results-max-length-bool]": lambda w, s: ["eval", "-a", str(results_option(w, s, "max_length", True)),
                                                   "--task", "sst2", "--data-dir", str(w.glue)],
    # 1e300 epochs would train until the machine is switched off
    "train[--epochs=1e300]": lambda w, s: train(w, s, "--epochs", "1e300"),
    "search[--epochs=1e300]": lambda w, s: search(w, s, "--epochs", "1e300"),
    "demo[--epochs=1e300]": lambda w, s: ["demo", "-o", str(s / "demo"), "--epochs", "1e300"],
    "params[lora-targets=q+query]": lambda w, s: params(w, "lora:targets=q+query"),
    "params[lora-targets=value+v]": lambda w, s: params(w, "lora:targets=query+value+v"),
    "search[refused-resume-leaves-no-wal]": lambda w, s: (wal_search(w, s), search(w, s, "--strategy", "greedy", "--space",
                                                                                    str(put(s, "sp.yaml", "groups: 8\n"))))[1],
    "train[text-train.jsonl-and-train.csv]": lambda w, s: ["train", "--model", str(w.model), "--task", "text", "--data-dir",
                                                           str(both_formats(w, s)), "--design", "bitfit", "-o", str(s / "run")],
})


@pytest.mark.parametrize("name", list(CASES))
def test_fifth_corpus_bad_input_is_answered_cleanly(name, world: World, tmp_path, monkeypatch):
    answered_cleanly(world, tmp_path, monkeypatch, CASES[name])


def test_the_default_max_length_leaves_room_for_the_prompt(world: World, tmp_path, monkeypatch):
    """Without --max-length, a prompt-tuning run cuts inputs to the positions the prompt leaves (64 - 20 here)
    instead of failing on the first long input; the run records the length it used."""
    from typer.testing import CliRunner

    from lamina.cli import app

    monkeypatch.chdir(tmp_path)
    argv = train(world, tmp_path, "--max-steps", "1", design="prompt:length=20")
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "results.json").read_text())["options"]["max_length"] == 44


def test_a_long_document_is_read_not_refused(tmp_path):
    """A 300 kB CSV field and a 2 MB TSV sentence were refused by csv's default field limit (128 kB); they are
    read, and --max-length cuts what the model sees."""
    from lamina.tasks.base import iter_tsv
    from lamina.tasks.textcls import load_text_classification

    long = "word " * 60_000
    rows = load_text_classification(put(tmp_path, "train.csv", f"text,label\n{long},pos\nshort,neg\n"))
    assert len(rows) == 2 and len(rows[0]["text"]) == len(long)
    tsv = put(tmp_path, "train.tsv", "sentence\tlabel\n" + "word " * 400_000 + "\t1\nshort\t0\n")
    assert len(list(iter_tsv(tsv))) == 3
