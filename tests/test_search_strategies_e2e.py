"""`lamina search --strategy joint` and `--strategy one-shot` end to end on a tiny random BERT, as
test_search_e2e.py does for greedy: two worker processes on one SQLite study, SIGKILLed mid-trial, resumed
by the same command with one worker; every planned trial runs to completion exactly once, only the
interrupted ones ran again; the final design is an ordinary design file within the budget; the ledger
prices the search; `lamina report` draws the anytime plot (and the one-shot gates)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from lamina.cli import app
from lamina.design import Design
from test_search_e2e import cli_args, env, events, one_thread, per_candidate, tiny  # noqa: F401  (fixtures)

CASES = {
    "joint": ["--trials", "4", "--eval-steps", "1", "--startup-trials", "2"],
    "one-shot": ["--epochs", "2"],
}


def run_killed_then_resumed(tiny, out, strategy):
    args = cli_args(tiny, out, 2, "--heartbeat", "2", "--strategy", strategy, *CASES[strategy])
    proc = subprocess.Popen([sys.executable, "-m", "lamina.cli", *args, "--workers", "2"], env=env(),
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, killed = time.monotonic() + 240, False
    while not killed and time.monotonic() < deadline and proc.poll() is None:
        if (out / "trials.log").is_file():
            evts = events(out)
            joined = [e["time"] for e in evts if e["event"] == "worker"]
            if len(joined) == 2 and any(e["event"] == "start" and e["time"] > max(joined) for e in evts):
                os.killpg(proc.pid, signal.SIGKILL)  # the command and both workers, mid-trial
                killed = True
        time.sleep(0.02)
    proc.wait(timeout=30)
    assert killed, "the search finished (or stalled) before both workers were in"
    before = events(out)
    assert len({e["pid"] for e in before if e["event"] == "worker"}) == 2
    started = {(e["stage"], e["candidate"]) for e in before if e["event"] == "start"}
    settled = {(e["stage"], e["candidate"]) for e in before if e["event"] in ("complete", "pruned", "failed")}
    interrupted = started - settled
    assert interrupted, "the kill landed between trials"
    resumed = CliRunner().invoke(app, args)
    assert resumed.exit_code == 0, resumed.output[-2000:]
    assert "full-training equivalents" in resumed.output
    return json.loads((out / "search.json").read_text()), interrupted


@pytest.mark.parametrize("strategy", list(CASES))
def test_two_workers_killed_and_resumed_settle_every_trial_once(tiny, tmp_path, one_thread, strategy):
    out = tmp_path / strategy
    record, interrupted = run_killed_then_resumed(tiny, out, strategy)
    assert record["strategy"] == strategy
    (stage,) = record["stages"]
    planned = {(1, c) for c in range(4 if strategy == "joint" else 1)}
    final = record["final"]["training"]
    if not final["reused"]:
        planned.add((0, 0))  # the final study: one training of the final design
    counts = per_candidate(events(out))
    for key in planned:  # settled exactly once; started twice only if the kill interrupted it
        assert sum(counts[(*key, e)] for e in ("complete", "pruned", "failed")) == 1, key
        assert counts[(*key, "start")] == (2 if key in interrupted else 1), key
    assert {(k, c) for k, c, _ in counts} == planned
    ledger = record["ledger"]
    killed = [t for t in stage["trials"] if t["state"] == "FAIL" and t["seconds"] is None]  # no compute recorded
    assert ledger["total"]["killed"] == len(killed) >= len(interrupted - {(0, 0)})  # (a claim can die before its start)
    assert ledger["equivalents"]["cpu_s"] > 0 and ledger["reference"]["steps"] == final["steps"]

    design = Design.from_file(out / "design.yaml")  # an ordinary design file, solver-sized within the budget
    assert design.budget is not None and final["state"] == "COMPLETE"
    b = final["train_budget"]
    assert abs(b["achieved"] - b["target"]) <= b["tolerance"]
    if strategy == "joint":
        trials = [t for t in stage["trials"] if t["counted"]]
        assert trials[0]["warm_start"] == "lamina suggest" and stage["warm_start"]["probe"]["steps"] >= 1
        assert ledger["phases"][0]["phase"].startswith("warm start") and ledger["phases"][0]["steps"] >= 1
        for t in trials:
            if t["state"] != "FAIL":
                assert abs(t["train_budget"]["achieved"] - t["train_budget"]["target"]) <= t["train_budget"]["tolerance"]
    else:
        supernet = stage["supernet"]
        assert len(supernet["gates"]) == 8 * 4 and supernet["expected_end"] < supernet["expected_start"]
        kept = {tuple(c) for c in supernet["pruned"]["kept"]}
        assert {(l, s.method) for g in design.groups for l in range(g.first, g.last + 1) for s in g.strategies} == kept

    result = CliRunner().invoke(app, ["report", str(out), "--output", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    written = {p.name for p in (tmp_path / "report").iterdir()}
    assert f"{strategy}-anytime.png" in written
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Compute ledger" in text and "full-training equivalents" in text
    if strategy == "one-shot":
        assert {"one-shot-gates.png", "one-shot-expected.png"} <= written
    else:
        assert "Warm start" in text


def test_unknown_strategy_and_one_shot_on_two_tasks_are_one_line_exit_2(tiny, tmp_path):
    for extra, message in ((["--strategy", "random"], "unknown strategy 'random'"),
                           (["--strategy", "one-shot", "--task", "sst2"], "one-shot trains its supernet on one task")):
        result = CliRunner().invoke(app, [*cli_args(tiny, tmp_path / "out", 2), *extra])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_the_default_strategy_is_one_shot_and_two_tasks_are_pointed_to_the_others(tiny, tmp_path):
    """docs/search and the README recommend one-shot (the measured comparison); `lamina search` defaults to it."""
    args = cli_args(tiny, tmp_path / "out", 2)
    at = args.index("--strategy")
    del args[at:at + 2]
    result = CliRunner().invoke(app, [*args, "--task", "sst2"])
    assert result.exit_code == 2, result.output
    assert "one-shot trains its supernet on one task" in result.output and "--strategy joint or greedy" in result.output
