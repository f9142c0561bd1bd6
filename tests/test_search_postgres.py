"""A distributed search over a real PostgreSQL server: one study, three independent worker processes (as on
three machines: each its own `lamina search` command and output folder), one of them SIGKILLed in the middle
of a trial. Every candidate must be counted exactly once (the killed trial is retried by another worker), and
the winners must equal those of a single-worker run of the same search.

The server comes from LAMINA_TEST_POSTGRES (a SQLAlchemy URL; `.ci/run` starts a private server through
`.ci/with-postgres`). The test skips, saying why, when no server is available. Each run gets a fresh database,
dropped afterwards."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from lamina.search import Search, SearchConfig, SearchSpace
from test_search_e2e import BUDGET, cli_args, env, events, one_thread, tiny  # noqa: F401  (fixtures)

URL_VAR = "LAMINA_TEST_POSTGRES"
SRC = Path(__file__).resolve().parents[1] / "src"
TRIALS = 3  # per stage: one per worker


@pytest.fixture
def database():
    """A fresh database on the test server (its URL), dropped afterwards."""
    url = os.environ.get(URL_VAR)
    if not url:
        pytest.skip(f"{URL_VAR} is not set: no PostgreSQL server to test against (.ci/run starts one)")
    try:
        import psycopg  # noqa: F401
        import sqlalchemy as sa
    except ImportError as err:
        pytest.skip(f"the PostgreSQL driver is not installed ({err}); pip install 'lamina[postgres]'")
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"lamina_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as err:
        pytest.skip(f"the PostgreSQL server at {URL_VAR} is not reachable: {str(err).splitlines()[0]}")
    yield sa.engine.make_url(url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _open(url, barrier, results):
    from lamina.search.store import open_storage

    barrier.wait()
    try:
        open_storage(url)
        results.put("ok")
    except Exception as err:  # noqa: BLE001 - reported to the test
        results.put(f"{type(err).__name__}: {err}")


def test_workers_opening_a_new_database_at_once_all_get_in(database):
    """Every worker creates Optuna's tables in a new database; on PostgreSQL the losers of that race got a
    unique-violation error (and left the search) until opening retried it."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(6), ctx.Queue()
    procs = [ctx.Process(target=_open, args=(database, barrier, results)) for _ in range(6)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert outcomes == ["ok"] * 6, outcomes


def reference_winners(tiny, tmp_path) -> list:
    """The same search, one worker, in this process, on SQLite."""
    model, data = tiny
    config = SearchConfig(model=str(model), tasks=("sst2",), data=(str(data),), space=SearchSpace.from_dict(
        {"budget": BUDGET, "seed": 0}), trials_per_stage=TRIALS, epochs=1, batch_size=16, max_length=16, lr=0.01)
    record = Search(config, tmp_path / "reference", heartbeat=5, poll=0.1, say=lambda t: None).run()
    return [stage["winner"] for stage in record["stages"]]


def running_trials(evts: list[dict], pid: int) -> list[dict]:
    """Trials worker `pid` has started and not finished."""
    mine = [e for e in evts if e["pid"] == pid and "stage" in e]
    done = {(e["stage"], e["trial"]) for e in mine if e["event"] in ("complete", "pruned", "failed")}
    return [e for e in mine if e["event"] == "start" and (e["stage"], e["trial"]) not in done]


def test_three_workers_on_postgres_one_killed_mid_trial(tiny, tmp_path, database, one_thread):
    started = time.monotonic()
    argv = lambda i: [sys.executable, "-m", "lamina.cli", *cli_args(tiny, tmp_path / f"machine{i}", TRIALS,  # noqa: E731
                      "--storage", database, "--study", "pg", "--heartbeat", "2")]
    errs = [open(tmp_path / f"machine{i}.err", "w") for i in range(3)]
    workers = [subprocess.Popen(argv(i), env={**env(), "PYTHONPATH": str(SRC)}, stdout=subprocess.DEVNULL,
                                stderr=errs[i]) for i in range(3)]
    logs = [tmp_path / f"machine{i}" for i in range(3)]
    victim = killed_at = None
    try:
        # once all three have joined the study, SIGKILL whichever is first seen in the middle of a trial
        # (which one depends on the machine's load: a fixed victim could be starved of trials by the others)
        deadline = time.monotonic() + 300
        while victim is None and time.monotonic() < deadline and all(w.poll() is None for w in workers):
            evts = [e for folder in logs if (folder / "trials.log").is_file() for e in events(folder)]
            if len({e["pid"] for e in evts if e["event"] == "worker"}) == 3:
                for w in workers:
                    running = running_trials(evts, w.pid)
                    if running:
                        w.send_signal(signal.SIGKILL)  # no cleanup of any kind: its heartbeat just stops
                        victim, killed_at = w, (running[0]["stage"], running[0]["candidate"])
                        break
            time.sleep(0.02)
        assert victim is not None, ("no worker could be killed mid-trial with all three in the study",
                                    [w.poll() for w in workers], [(tmp_path / f"machine{i}.err").read_text()[-2000:]
                                                                  for i in range(3)])
        survivors = [w for w in workers if w is not victim]
        codes = [w.wait(timeout=600) for w in survivors]
        assert codes == [0, 0], [(tmp_path / f"machine{workers.index(w)}.err").read_text()[-3000:] for w in survivors]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
        for handle in errs:
            handle.close()
    victim.wait()
    logs = [logs[workers.index(w)] for w in survivors] + [logs[workers.index(victim)]]

    evts = [e for folder in logs for e in events(folder)]
    counts = collections.Counter((e["stage"], e["candidate"], e["event"]) for e in evts if "stage" in e)
    for k in range(1, 5):
        for c in range(TRIALS):
            assert counts[(k, c, "complete")] == 1, (k, c)  # nothing lost, nothing counted twice
    assert counts[(*killed_at, "start")] == 2  # the killed attempt and its retry
    record = json.loads((logs[0] / "search.json").read_text())
    assert record == json.loads((logs[1] / "search.json").read_text())  # both survivors wrote the same record
    for stage in record["stages"]:
        counted = collections.Counter(t["candidate"] for t in stage["trials"] if t["counted"])
        assert counted == {c: 1 for c in range(TRIALS)}
    retried = [t for t in record["stages"][killed_at[0] - 1]["trials"] if t["candidate"] == killed_at[1]]
    assert [(t["state"], t["counted"]) for t in retried] == [("FAIL", False), ("COMPLETE", True)]
    assert "postgresql" in record["storage"] and "pg" == record["study"]
    assert [s["winner"] for s in record["stages"]] == reference_winners(tiny, tmp_path)
    print(f"three workers on PostgreSQL, one killed at stage {killed_at[0]} candidate {killed_at[1]}: "
          f"{time.monotonic() - started:.0f} s")
