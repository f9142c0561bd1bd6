"""The search engine on its study store, with a scripted trainer (no training): stages, budgets, pruning,
crash-retry accounting, duplicates, repair, failed trials, settings guard. Real training: test_search_e2e."""

import hashlib
import json
import time
from types import SimpleNamespace

import optuna
import pytest
import transformers as T
from optuna.trial import TrialState

from lamina.errors import LaminaError
from lamina.search import Search, SearchConfig, SearchSpace, build_record
from lamina.search import store

STEPS = 8


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine")
    cfg = T.BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=8, num_attention_heads=4, intermediate_size=37,
                       max_position_embeddings=32)
    cfg.save_pretrained(root / "model")  # the engine needs only the config (sampling sizes designs on meta)
    (root / "data").mkdir()
    (root / "data" / "train.tsv").write_text("sentence\tlabel\na b\t1\n")
    (root / "data" / "dev.tsv").write_text("sentence\tlabel\na b\t1\n")
    return root


def score_of(design) -> float:
    """A deterministic score per design, in 0.5..0.9."""
    digest = hashlib.sha256(json.dumps(design.to_dict(), sort_keys=True).encode()).digest()
    return 0.5 + 0.4 * digest[0] / 255


def scripted(calls: list, fail_if=None):
    """A stand-in for lamina.train.train: drives the callbacks like the HF Trainer (STEPS steps, an
    evaluation every eval_steps), returns a results dict like train's."""

    def train(model, task, design, data_dir, output_dir, callbacks=(), eval_steps=None, **kw):
        calls.append(design.name)
        if fail_if and fail_if(design):
            raise RuntimeError("scripted failure")
        final = score_of(design)
        state = SimpleNamespace(global_step=0, max_steps=STEPS)
        for cb in callbacks:
            cb.on_train_begin(None, state, None)
        every = eval_steps or STEPS
        for step in range(1, STEPS + 1):
            state.global_step = step
            for cb in callbacks:
                cb.on_step_end(None, state, None)
                if step % every == 0 or step == STEPS:
                    cb.on_evaluate(None, state, None, metrics={"eval_accuracy": final * step / STEPS})
        return {"main_score": final, "global_step": STEPS, "trainable_params": 1234, "stored_params": 1234}

    return train


def make(setup, tmp_path, calls, n=4, study="s", space=None, **options):
    space = SearchSpace.from_dict({"budget": "8%", "seed": 3, **(space or {})})
    config = SearchConfig(model=str(setup / "model"), tasks=("sst2",), data=(str(setup / "data"),), space=space,
                          trials_per_stage=n, **options)
    return Search(config, tmp_path / "out", study=study, heartbeat=1, poll=0.05, trainer=scripted(calls), say=lambda t: None)


def test_four_stages_in_order_every_design_on_budget(setup, tmp_path):
    calls = []
    search = make(setup, tmp_path, calls, n=3)
    record = search.run()
    assert [s["component"] for s in record["stages"]] == ["grouping", "allocation", "tunable", "strategies"]
    assert len(calls) == 12 + 1  # 4 stages x 3 trials, then one training of the final design
    final = record["final"]
    assert calls[-1] == "s" and final["training"]["design"] == final["design"]  # named after the study
    assert final["training"]["label"] == final["label"] and final["training"]["state"] == "COMPLETE"
    for stage in record["stages"]:
        counted = [t for t in stage["trials"] if t["counted"]]
        assert sorted(t["candidate"] for t in counted) == [0, 1, 2]
        for t in counted:
            b = t["budget"]
            assert abs(b["achieved"] - b["target"]) <= b["tolerance"]
        assert stage["stats"] and stage["winner"] is not None
    # later stages keep the earlier winners fixed
    s2 = record["stages"][1]
    assert all(t["point"]["grouping"] == record["stages"][0]["winner"] for t in s2["trials"])
    # the same search again (resume of a finished study) trains nothing and gives the same record
    again = make(setup, tmp_path, calls, n=3).run()
    assert len(calls) == 13 and again["final"] == record["final"]
    assert (tmp_path / "out" / "design.yaml").is_file() and (tmp_path / "out" / "search.json").is_file()


def test_same_seed_same_candidates_other_seed_other_ones(setup, tmp_path):
    a = make(setup, tmp_path, []).candidates("grouping", {})
    b = make(setup, tmp_path, []).candidates("grouping", {})
    assert [c.params for c in a] == [c.params for c in b]
    other = make(setup, tmp_path, [])
    other.space = SearchSpace.from_dict({"budget": "8%", "seed": 4})
    assert [c.params for c in other.candidates("grouping", {})] != [c.params for c in a]


def test_pruning_stops_trailing_trials_and_counts_what_it_saved(setup, tmp_path):
    calls = []
    one_choice = {"grouping": ["spindle"], "allocation": ["uniform"]}  # stages 1-2 fixed by the space: no trials
    record = make(setup, tmp_path, calls, n=6, prune=True, eval_steps=2, space=one_choice).run()
    assert [len(s["trials"]) for s in record["stages"]] == [0, 0, 6, 6]
    assert record["stages"][0]["winner"] == "spindle" and "fixed by the space" in record["stages"][0]["notes"][0]
    trials = [t for s in record["stages"] for t in s["trials"]]
    pruned = [t for t in trials if t["state"] == "PRUNED"]
    assert pruned, "successive halving pruned nothing"
    for t in pruned:
        assert t["steps"] < t["planned_steps"] == STEPS
        assert t["intermediate"]  # scored by the last reported value
    c = record["compute"]
    assert c["pruned"] == len(pruned) and c["steps"] < c["planned_steps"] and c["saved_steps_percent"] > 0


def test_a_killed_trial_is_retried_and_counted_once(setup, tmp_path):
    storage = store.open_storage(f"sqlite:///{tmp_path}/s.db", heartbeat=1, grace=1)
    study = optuna.create_study(storage=storage, study_name="st")
    params = {"x": "a"}
    dist = store.categorical(params, {"x": ["a"]})
    for i in range(2):
        store.enqueue(study, store.Candidate(i, params, dist, {"point": None}))
    sid = storage.get_study_id_from_name("st")
    first = store.pop_waiting(storage, sid)  # "worker dies": RUNNING, one heartbeat, then silence
    assert storage.get_trial(first).state == TrialState.RUNNING
    assert store.stage_state(study.get_trials(), 2).live == {0, 1}
    time.sleep(2.2)
    store.fail_stale(study)
    trials = study.get_trials()
    assert [t.state for t in trials[:2]] == [TrialState.FAIL, TrialState.WAITING]
    retry = trials[2]
    assert retry.state == TrialState.WAITING and retry.user_attrs["candidate"] == 0
    for _ in range(2):
        tid = store.pop_waiting(storage, sid)
        storage.set_trial_state_values(tid, TrialState.COMPLETE, [0.5])
    state = store.stage_state(study.get_trials(), 2)
    assert state.complete and {c: t.number for c, t in state.counted.items()} == {0: 2, 1: 1}


def test_double_enqueue_trains_once_and_orphans_are_repaired(setup, tmp_path):
    calls = []
    search = make(setup, tmp_path, calls, n=3, study="dup")
    search.repair_after = 0.2
    root = store.open_root(search.storage, "dup", search.config.to_dict())
    cands = search.candidates("grouping", {})
    name = store.stage_study_name("dup", 1, "grouping")
    study = optuna.create_study(storage=search.storage, study_name=name)
    store.enqueue(study, cands[0])
    store.enqueue(study, cands[0])  # a racing repair: candidate 0 twice; candidates 1, 2 never enqueued
    search.run()
    trials = study.get_trials()
    dups = [t for t in trials if "duplicate_of" in t.user_attrs]
    assert len(dups) == 1 and dups[0].state == TrialState.FAIL
    counted = store.stage_state(trials, 3).counted
    assert sorted(counted) == [0, 1, 2]
    assert len(calls) == 3 * 4 + 1  # every candidate of every stage trained exactly once, then the final design
    events = [json.loads(line) for line in (tmp_path / "out" / "trials.log").read_text().splitlines()]
    assert sum(e["event"] == "duplicate" for e in events) == 1
    assert root.user_attrs["winner.grouping"] == build_record(search.storage, "dup")["stages"][0]["winner"]


def test_a_failing_trial_is_recorded_and_the_stage_still_decides(setup, tmp_path):
    calls = []
    search = make(setup, tmp_path, calls, n=3)
    doomed = search.candidates("grouping", {})[0].params["grouping"]  # stage 1 tries 4 different patterns
    search.trainer = scripted(calls, fail_if=lambda d: d.name.startswith(doomed + "/"))
    record = search.run()
    stage1 = record["stages"][0]
    failed = [t for t in stage1["trials"] if t["state"] == "FAIL"]
    assert len(failed) == 1 and failed[0]["error"] == "RuntimeError: scripted failure" and failed[0]["counted"]
    row = next(r for r in stage1["stats"] if r["choice"] == doomed)  # 3 trials, 3 different patterns
    assert row["n"] == 0 and row["failed"] == 1 and not row["winner"]
    assert stage1["winner"] != doomed and record["final"] is not None


def test_joining_with_other_settings_is_refused(setup, tmp_path):
    first = make(setup, tmp_path, [], study="guard")
    store.open_root(first.storage, "guard", first.config.to_dict())
    store.open_root(first.storage, "guard", first.config.to_dict())  # same settings: joins
    other = make(setup, tmp_path, [], study="guard", epochs=2.0)
    with pytest.raises(LaminaError, match="other settings.*epochs"):
        other.run()


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_trial_failed_as_stale_while_still_running_is_discarded_not_counted_twice(setup, tmp_path):
    """A worker too slow to beat: another worker failed its trial as stale and Optuna re-enqueued it.
    The slow worker's result is discarded; the retry is the one that counts."""
    calls = []
    search = make(setup, tmp_path, calls, n=2, space={"grouping": ["spindle"], "allocation": ["uniform"]})
    inner = scripted(calls)
    hit = []

    def train(*args, **kwargs):
        if not hit:
            hit.append(True)
            study = optuna.load_study(storage=search.storage, study_name=store.stage_study_name("s", 3, "tunable"))
            running = next(t for t in study.get_trials() if t.state == TrialState.RUNNING)
            search.storage.set_trial_state_values(running._trial_id, TrialState.FAIL)  # what fail_stale_trials does
            optuna.storages.RetryHeartbeatStaleTrialCallback()(study, search.storage.get_trial(running._trial_id))
        return inner(*args, **kwargs)

    search.trainer = train
    record = search.run()
    evts = [json.loads(line) for line in (tmp_path / "out" / "trials.log").read_text().splitlines()]
    assert [(e["stage"], e["candidate"]) for e in evts if e["event"] == "discarded"] == [(3, 0)]
    stage3 = record["stages"][2]
    attempts = [t for t in stage3["trials"] if t["candidate"] == 0]
    assert [(t["state"], t["counted"]) for t in attempts] == [("FAIL", False), ("COMPLETE", True)]
    assert sum(e["event"] == "complete" and e["stage"] == 3 for e in evts) == 2 and record["compute"]["trials"] == 4
