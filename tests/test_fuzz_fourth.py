"""The fourth outside corpus (issue 14, /work/fuzz6: 321 cases written from the docs alone) found these
after the first three were answered: SQLite stores in a missing folder, in someone else's database or
inside the data, numbers too large for an integer, an exported DoRA adapter without its magnitudes, a
suggestion over a tokenizer larger than the model, a budget below every cell, and a non-float weight.
Each ends like the earlier corpora: exit code 2, one `error:` line, nothing created or changed.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_world import World, build  # noqa: E402
from test_fuzz_fresh import answered_cleanly, search  # noqa: E402

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


CASES.update({
    "search[--storage=sqlite-missing-folder]": lambda w, s: search(w, s, "--storage", f"sqlite:///{s / 'no' / 'dir' / 's.db'}"),
    "search[--storage=bare-path-missing-folder]": lambda w, s: search(w, s, "--storage", str(s / "no" / "s.db")),
    "search[--storage=foreign-sqlite]": lambda w, s: search(w, s, "--storage", str(foreign_db(s))),
    "search[--storage=inside-data-dir]": lambda w, s: search(w, s, "--storage", str(w.glue / "search.db")),
})


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return build(tmp_path_factory.mktemp("fourth-world"))


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
