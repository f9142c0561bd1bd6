"""Design-space search with real training on a tiny random BERT (saved to disk, offline tokenizer) and
tiny SST-2-format data: a whole 4-stage search in-process, two CLI worker processes on one SQLite study,
a search killed with SIGKILL and resumed, `lamina report`, and the CLI's one-line errors."""

import collections
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
import transformers as T
from typer.testing import CliRunner

from lamina.cli import app
from lamina.design import Design
from lamina.search import Search, SearchConfig, SearchSpace

WORDS = "good great fine nice bad awful poor sad the a movie film plot actor very quite is was".split()
BUDGET = "8%"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(model folder, data folder): BERT 8 layers x hidden 32 with its tokenizer; 32 train / 16 dev rows."""
    root = tmp_path_factory.mktemp("search-tiny")
    model = root / "model"
    model.mkdir()
    (model / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = T.BertTokenizerFast(vocab=str(model / "vocab.txt"))
    torch.manual_seed(0)
    config = T.BertConfig(vocab_size=len(WORDS) + 5, hidden_size=32, num_hidden_layers=8, num_attention_heads=4,
                          intermediate_size=37, max_position_embeddings=32, num_labels=2)
    T.BertForSequenceClassification(config).save_pretrained(model)
    tokenizer.save_pretrained(model)
    rng = random.Random(0)
    data = root / "data"
    data.mkdir()
    for name, n in (("train.tsv", 32), ("dev.tsv", 16)):
        rows = ["sentence\tlabel"]
        for _ in range(n):
            label = rng.randint(0, 1)
            words = [rng.choice(WORDS[8:]) for _ in range(4)] + [rng.choice(WORDS[:4] if label else WORDS[4:8])]
            rng.shuffle(words)
            rows.append(" ".join(words) + "\t" + str(label))
        (data / name).write_text("\n".join(rows) + "\n")
    return model, data


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on shared cores: one thread is several times faster
    yield
    torch.set_num_threads(before)


def cli_args(tiny, out, n=2, *extra):
    model, data = tiny
    return ["search", "--model", str(model), "--task", "sst2", "--data-dir", str(data), "--budget", BUDGET,
            "--trials-per-stage", str(n), "--epochs", "1", "--batch-size", "16", "--max-length", "16",
            "--lr", "0.01", "--threads", "1", "--output", str(out),
            *(() if "--strategy" in extra else ("--strategy", "greedy")), *extra]  # the CLI's default is one-shot


def events(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "trials.log").read_text().splitlines()]


def per_candidate(evts) -> collections.Counter:
    return collections.Counter((e["stage"], e["candidate"], e["event"]) for e in evts if "stage" in e)


def env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "OMP_NUM_THREADS": "1"}


def test_whole_search_then_the_final_design_reloads_and_trains(tiny, tmp_path, one_thread):
    from lamina.train import train

    model, data = tiny
    space = SearchSpace.from_dict({"budget": BUDGET, "seed": 0})
    config = SearchConfig(model=str(model), tasks=("sst2",), data=(str(data),), space=space, trials_per_stage=2,
                          epochs=1, batch_size=16, max_length=16, lr=0.01)
    out = tmp_path / "search"
    record = Search(config, out, heartbeat=5, poll=0.1, say=lambda t: None).run()

    assert [s["component"] for s in record["stages"]] == ["grouping", "allocation", "tunable", "strategies"]
    for stage in record["stages"]:
        counted = [t for t in stage["trials"] if t["counted"]]
        assert len(counted) == 2 and all(t["state"] == "COMPLETE" for t in counted)
        for t in counted:  # what trained met the budget within the solver's tolerance (report.budget)
            b = t["train_budget"]
            assert b["target"] == t["budget"]["target"] and abs(b["achieved"] - b["target"]) <= b["tolerance"]
        assert stage["winner"] is not None and stage["stats"]
    final = record["final"]["training"]  # one training of the final design (or the trial that already was one)
    assert final["state"] == "COMPLETE" and final["design"]["groups"] == record["final"]["design"]["groups"]
    trained_once = {(0, 0, e): 1 for e in ("start", "complete")} if not final["reused"] else {}
    assert per_candidate(events(out)) == {**{(k, c, e): 1 for k in range(1, 5) for c in range(2)
                                              for e in ("start", "complete")}, **trained_once}
    ledger = record["ledger"]
    assert ledger["total"]["steps"] == sum(t["steps"] for s in record["stages"] for t in s["trials"])
    assert ledger["equivalents"]["steps"] == round(ledger["total"]["steps"] / final["steps"], 3)

    design = Design.from_file(out / "design.yaml")  # the normal design file `lamina train --design` takes
    assert design.budget is not None and design.budget.target == BUDGET
    assert any(getattr(s, "r", 0) is None or getattr(s, "length", 0) is None or getattr(s, "bottleneck", 0) is None
               for g in design.groups for s in g.strategies if s.method != "bitfit")
    results = train(str(model), "sst2", str(out / "design.yaml"), str(data), str(tmp_path / "final"), epochs=1,
                    batch_size=16, max_length=16, progress=False)
    budget = results["params_report"]["budget"]
    assert abs(budget["achieved"] - budget["target"]) <= budget["tolerance"]
    assert results["main_score"] is not None

    runner = CliRunner()
    result = runner.invoke(app, ["report", str(out), "--output", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    written = {p.name for p in (tmp_path / "report").iterdir()}
    assert {"report.md", "report.html", "search-score-vs-params.png", "search-anytime.png"} <= written
    assert sum(name.endswith(".png") for name in written) == 6  # 4 stage distributions, score vs params, anytime
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Stage 4: strategies" in text and "Pareto" in text and "full-training equivalents" in text
    assert "| choice | n | mean | median | std | min | max |" in text


def test_two_workers_share_a_study_and_a_sigkilled_search_resumes_without_loss_or_repeat(tiny, tmp_path, one_thread):
    """`--workers 2` on one SQLite study, killed with SIGKILL (the command and its two workers, mid-trial)
    once both workers are in, then the same command with one worker (in this process: no second
    interpreter start-up): every trial runs to completion exactly once; only the trials running at the
    kill ran again, as Optuna retries of the stale trials."""
    out = tmp_path / "shared"
    argv = [sys.executable, "-m", "lamina.cli", *cli_args(tiny, out, 2, "--heartbeat", "2"), "--workers", "2"]
    proc = subprocess.Popen(argv, env=env(), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    killed = False
    while not killed and time.monotonic() < deadline and proc.poll() is None:
        if (out / "trials.log").is_file():
            evts = events(out)
            joined = [e["time"] for e in evts if e["event"] == "worker"]
            if len(joined) == 2 and any(e["event"] == "start" and e["time"] > max(joined) and e["stage"] >= 2 for e in evts):
                os.killpg(proc.pid, signal.SIGKILL)  # the command and both workers, no cleanup of any kind
                killed = True
        time.sleep(0.02)
    proc.wait(timeout=30)
    assert killed, "the search finished (or stalled) before both workers were in"
    before = events(out)
    assert len({e["pid"] for e in before if e["event"] == "worker"}) == 2  # two worker processes on one study
    started = {(e["stage"], e["candidate"]) for e in before if e["event"] == "start"}
    done = {(e["stage"], e["candidate"]) for e in before if e["event"] == "complete"}
    assert all(n == 1 for n in per_candidate(before).values())  # so far every trial ran once
    interrupted = started - done
    assert interrupted, "the kill landed between trials"

    resumed = CliRunner().invoke(app, cli_args(tiny, out, 2, "--heartbeat", "2"))
    assert resumed.exit_code == 0, resumed.output[-2000:]
    counts = per_candidate(events(out))
    record = json.loads((out / "search.json").read_text())
    if not record["final"]["training"]["reused"]:
        assert counts[(0, 0, "complete")] == 1 and counts[(0, 0, "start")] == (2 if (0, 0) in interrupted else 1)
    for k in range(1, 5):
        for c in range(2):
            assert counts[(k, c, "complete")] == 1  # nothing lost, nothing repeated
            assert counts[(k, c, "start")] == (2 if (k, c) in interrupted else 1)  # only the killed ones ran again
    for k, c in interrupted:
        attempts = [t for t in record["stages"][k - 1]["trials"] if t["candidate"] == c] if k else \
            record["final"]["attempts"]
        assert [(t["state"], t["counted"]) for t in attempts] == [("FAIL", False), ("COMPLETE", True)]
        assert attempts[1]["retry_of"] == attempts[0]["trial"]
    assert record["compute"]["trials"] == 8 and record["final"] is not None
    assert "final design" in resumed.output


@pytest.mark.parametrize("space_text, extra, message", [
    ("groups: [4\n", [], "not valid YAML"),
    ("grouping: [spiral]\n", [], "grouping"),
    ("budget: 0.5%\n", ["--budget", "lots"], "neither a count nor a percentage"),
    ("budget: 0.5%\n", ["--budget", "3"], "no feasible design"),
    ("groups: 12\n", [], "12 groups need at least 12 layers"),
])
def test_bad_space_or_budget_is_one_line_exit_2(tiny, tmp_path, space_text, extra, message):
    space = tmp_path / "space.yaml"
    space.write_text(space_text)
    result = CliRunner().invoke(app, [*cli_args(tiny, tmp_path / "out", 2, "--space", str(space)), *extra])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
