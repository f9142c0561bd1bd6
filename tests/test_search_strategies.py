"""The parts behind `--strategy joint` and `--strategy one-shot`, and the compute ledger, without the CLI:
every method's declared gate (`Method.scaled_tensors`) switches it off at 0 and leaves it as trained at 1;
the supernet's budget penalty moves the expected parameter count to the budget; pruning gives an ordinary,
budget-sized, grouped design; the joint search's slots are sampled by TPE and run exactly once; the ledger
adds up. The CLI end to end (workers, kill and resume): test_search_strategies_e2e.py."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import pytest
import torch
from torch.nn.utils import parametrize

import lamina
import tiny
from lamina.design import Design
from lamina.methods import METHODS
from lamina.search import Search, SearchConfig, SearchSpace, joint, ledger, oneshot, supernet
from lamina.inject import adapters_of
from test_search_e2e import one_thread  # noqa: F401  (fixture)
from test_search_e2e import tiny as tiny_data  # noqa: F401  (fixture: a tiny BERT on disk, SST-2-format rows)

LAYER_METHODS = [
    ("adapter", {"bottleneck": 4}), ("adapter", {"bottleneck": 4, "placement": "houlsby"}), ("prefix", {"length": 3}),
    ("prefix", {"length": 3, "mlp": 8}), ("bitfit", {}), ("lora", {"r": 2}), ("lora", {"r": 2, "dora": True}),
    ("ln", {}), ("ia3", {}),
]


def hidden(model, batch) -> torch.Tensor:
    """The last layer's states (the logits of a random tiny head are too small to tell changes apart)."""
    return model(**batch, output_hidden_states=True).hidden_states[-1].detach()


@pytest.mark.parametrize("method, options", LAYER_METHODS, ids=lambda v: v if isinstance(v, str) else "-".join(map(str, v.values())))
def test_a_gate_at_zero_turns_the_method_off_and_at_one_leaves_it_as_trained(method, options):
    model = tiny.model("bert")
    batch = tiny.batch("bert", pad_last=2)
    base = hidden(model, batch)
    design = Design.from_dict({"groups": [{"layers": [0, 3], "strategies": [{method: options}]}], "train_head": False})
    lamina.apply(model, design, name=supernet.ADAPTER)
    gates = supernet.ArchGates([(0, method)], {(0, method): 1}, 1)
    assert supernet.attach_gates(model, design, gates) > 0
    torch.manual_seed(1)
    with torch.no_grad():  # "training": move every tensor of the method away from where it was built
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn_like(p))
        gates.alpha.fill_(float("inf"))
    at_one = hidden(model, batch)
    with torch.no_grad():
        gates.alpha.fill_(float("-inf"))
    at_zero = hidden(model, batch)
    module = adapters_of(model)[supernet.ADAPTER].groups["0"][method]
    if method == "prefix":  # UniPELT's prefix gate: keys and values are zero (though they still take attention)
        assert not module.all_kv(-1).detach().any()
    for owner in [m for m in module.modules() if parametrize.is_parametrized(m)]:
        for name in list(owner.parametrizations):
            parametrize.remove_parametrizations(owner, name, leave_parametrized=False)
    trained = hidden(model, batch)
    assert torch.allclose(at_one, trained, atol=1e-5)  # g = 1: the method exactly as trained
    assert (trained - base).abs().max() > 1e-2  # (the perturbation did change the model)
    if method != "prefix":
        assert torch.allclose(at_zero, base, atol=1e-5)  # g = 0: the method is off


def test_a_method_that_declares_nothing_is_refused_in_one_line():
    class Opaque(type(METHODS["bitfit"])):
        def scaled_tensors(self, module, strategy):
            return {}

    model = tiny.model("bert")
    design = Design.from_dict({"groups": [{"layers": 0, "strategies": ["bitfit"]}], "train_head": False})
    lamina.apply(model, design, name=supernet.ADAPTER)
    saved = METHODS["bitfit"]
    METHODS["bitfit"] = Opaque()
    try:
        with pytest.raises(lamina.LaminaError, match="declares no tensor that scales its contribution"):
            supernet.attach_gates(model, design, supernet.ArchGates([(0, "bitfit")], {(0, "bitfit"): 1}, 1))
    finally:
        METHODS["bitfit"] = saved


# --------------------------------------------------------------------------- one-shot


def _engine(tiny_data, tmp_path, **options) -> Search:
    model, data = tiny_data
    space = SearchSpace.from_dict({"budget": "8%", "seed": 0})
    config = SearchConfig(model=str(model), tasks=("sst2",), data=(str(data),), space=space, epochs=2, batch_size=8,
                          max_length=16, lr=0.01, strategy="one-shot", **options)
    return Search(config, tmp_path / "out", heartbeat=5, poll=0.1, say=lambda t: None)


def _supernet_run(engine, penalty: float, target: int) -> dict:
    inputs, collate, evaluation, model = oneshot.training_inputs(engine.config)
    design = oneshot.supernet_design(engine)
    return supernet.train(model, design, oneshot.cell_costs(engine, design), target, inputs, collate, evaluation,
                          epochs=2, batch_size=8, lr=0.01, alpha_lr=None, penalty=penalty, seed=0)


def test_the_budget_penalty_moves_the_expected_parameter_count_to_the_budget(tiny_data, tmp_path, one_thread):
    """The same supernet, the same data and seed, two budgets: the penalty pulls the expected count to each."""
    engine = _engine(tiny_data, tmp_path)
    budget = oneshot.budget_target(engine)
    runs = {b: _supernet_run(engine, 2.0, b) for b in (budget, budget // 2)}
    for b, run in runs.items():
        start, end = run["expected_start"], run["expected_end"]
        assert start > 1.3  # every gate at 0.5: well over the budget
        assert abs(end - 1) < 0.5 * abs(start - 1)  # pulled at least halfway to the budget
        assert sum(g["cost"] * g["gate"] for g in run["gates"]) / b == pytest.approx(end, abs=1e-3)
        assert len(run["expected_trajectory"]) == run["steps"] + 1 == 9  # 32 rows / 8 a batch x 2 epochs + start
    spent = {b: run["expected_end"] * b for b, run in runs.items()}
    assert spent[budget // 2] < 0.75 * spent[budget]  # half the budget: the gates close much further
    free = _supernet_run(engine, 0.0, budget // 2)  # without the penalty the budget plays no part
    assert abs(free["expected_end"] - 1) > 2 * abs(runs[budget // 2]["expected_end"] - 1)


def test_pruning_keeps_the_best_gated_cells_in_budget_and_groups_equal_neighbours(tiny_data, tmp_path):
    engine = _engine(tiny_data, tmp_path)
    design = oneshot.supernet_design(engine)
    costs = oneshot.cell_costs(engine, design)
    lora, adapter = "lora", "adapter"
    gates = {cell: 0.1 for cell in costs}
    gates.update({(l, lora): 0.9 for l in range(4, 8)})  # LoRA wanted in the top half, adapters in layer 0
    gates[(0, adapter)] = 0.8
    pruned, kept, notes = oneshot.prune(engine, gates, costs)
    assert set(kept) >= {(l, lora) for l in range(4, 8)} | {(0, adapter)}
    assert sum(costs[c] for c in kept) <= oneshot.budget_target(engine)  # at supernet sizes, within the budget
    groups = [(g.first, g.last, tuple(s.method for s in g.strategies)) for g in pruned.groups]
    assert (4, 7, (lora,)) in groups or any(a <= 4 and b >= 7 for a, b, _ in groups)  # neighbours grouped
    report = lamina.apply(engine.model_info()[0], pruned, dry_run=True)  # an ordinary design, solver-sized
    assert abs(report.budget["achieved"] - report.budget["target"]) <= report.budget["tolerance"]
    assert Design.from_dict(pruned.to_dict()) == pruned


# --------------------------------------------------------------------------- joint


def _score(design) -> float:
    return 0.5 + 0.4 * hashlib.sha256(json.dumps(design.to_dict(), sort_keys=True).encode()).digest()[0] / 255


def scripted(calls: list, steps: int = 8):
    """A stand-in for lamina.train.train (as in test_search_engine) that also reports a dataloader."""

    def train(model, task, design, data_dir, output_dir, callbacks=(), eval_steps=None, **kw):
        calls.append(design.to_dict())
        final = _score(design)
        state = SimpleNamespace(global_step=0, max_steps=steps)
        loader = type("Loader", (), {"dataset": range(30), "batch_size": 4, "__len__": lambda self: 8})()
        for cb in callbacks:
            cb.on_train_begin(SimpleNamespace(gradient_accumulation_steps=1), state, None, train_dataloader=loader)
        for step in range(1, steps + 1):
            state.global_step = step
            for cb in callbacks:
                cb.on_step_end(None, state, None)
                if step % (eval_steps or steps) == 0:
                    cb.on_evaluate(None, state, None, metrics={"eval_accuracy": final * step / steps},
                                   eval_dataloader=type("E", (), {"dataset": range(10)})())
        return {"main_score": final, "global_step": steps, "trainable_params": 1234, "stored_params": 1234}

    return train


@pytest.fixture(scope="module")
def config_only(tmp_path_factory):
    import transformers as T

    root = tmp_path_factory.mktemp("joint")
    T.BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=8, num_attention_heads=4, intermediate_size=37,
                 max_position_embeddings=32).save_pretrained(root / "model")
    (root / "data").mkdir()
    for name in ("train.tsv", "dev.tsv"):
        (root / "data" / name).write_text("sentence\tlabel\na b\t1\n")
    return root


def test_joint_samples_every_slot_once_by_tpe_and_keeps_the_best_complete_trial(config_only, tmp_path):
    calls = []
    space = SearchSpace.from_dict({"budget": "8%", "seed": 3})
    config = SearchConfig(model=str(config_only / "model"), tasks=("sst2",), data=(str(config_only / "data"),),
                          space=space, strategy="joint", trials=7, warm_start=False, startup_trials=3, prune=True,
                          eval_steps=2)
    search = Search(config, tmp_path / "out", heartbeat=1, poll=0.05, trainer=scripted(calls), say=lambda t: None)
    record = search.run()
    trials = record["stages"][0]["trials"]
    counted = [t for t in trials if t["counted"]]
    assert sorted(t["candidate"] for t in counted) == list(range(7)) and len(trials) == 7  # each slot once
    trained = [t for t in counted if t["state"] in ("COMPLETE", "PRUNED")]
    assert len(calls) == len(trained) and len(trained) >= 6  # infeasible draws (if any) never train
    assert all(set(t["params"]) == set(joint.parameters(space)) for t in trained)  # sampled over every component
    for t in trained:
        assert abs(t["budget"]["achieved"] - t["budget"]["target"]) <= t["budget"]["tolerance"]
    best = max((t for t in counted if t["state"] == "COMPLETE"), key=lambda t: (t["value"], -t["candidate"]))
    final = record["final"]
    assert final["label"] == best["label"] and final["training"]["reused"] and final["training"]["trial"] == best["trial"]
    assert len(calls) == len(trained)  # the final design's training is its trial: not trained again
    again = Search(config, tmp_path / "out", heartbeat=1, poll=0.05, trainer=scripted(calls), say=lambda t: None).run()
    assert len(calls) == len(trained) and again["final"]["label"] == final["label"]  # resume: nothing reruns
    c = record["ledger"]
    assert c["total"]["steps"] == sum(t["steps"] for t in trials) and c["reference"]["steps"] == best["steps"]
    assert c["total"]["examples"] == sum(t["examples"] for t in trials)
    assert all(t["examples"] == (30 if t["steps"] == 8 else 4 * t["steps"]) for t in trained)  # 30 rows, batches of 4


def test_a_design_proposal_is_projected_onto_the_space():
    space = SearchSpace.from_dict({"budget": "8%", "grouping": ["uniform", "spindle"]})
    lora, adapter = "lora", "adapter"
    proposal = Design.from_dict({"groups": [{"layers": [0, 1], "strategies": [adapter]},
                                            {"layers": [6, 7], "strategies": [{lora: {"r": None}}]}]})
    point, agree = joint.project(space, proposal, 8)
    assert point.grouping == "uniform" and point.tunable == (1, 4)  # groups of 2: 0-1 and 6-7 match exactly
    assert point.strategies[0] == (adapter,) and point.strategies[3] == (lora,) and agree == 8 * 4
    assert joint.point_of(space, joint.params_of(space, point)) == point


# --------------------------------------------------------------------------- the ledger


def test_the_ledger_adds_up_and_reads_as_full_training_equivalents():
    def entry(n, steps, cpu, value=None, state="COMPLETE", when="2024-01-01T00:00:0{}"):
        return {"trial": n, "state": state, "counted": True, "value": value, "steps": steps, "examples": 4 * steps,
                "eval_examples": 10, "cpu_s": cpu, "seconds": cpu + 1, "completed": when.format(n), "kind": "design"}

    phases = [{"name": "a", "trials": [entry(0, 10, 2.0, 0.6), entry(1, 5, 1.0, None, "PRUNED")]},
              {"name": "b", "trials": [entry(2, 10, 2.0, 0.7), {"trial": 3, "state": "FAIL", "counted": False,
                                                                    "seconds": None, "duplicate_of": None}]}]
    final = entry(9, 10, 2.0, 0.71)
    out = ledger.build_ledger(phases, final, [{"name": "probe", "steps": 1, "examples": 4, "cpu_s": 1.0, "wall_s": 1.0}])
    assert out["total"]["steps"] == 26 and out["total"]["cpu_s"] == 6.0 and out["total"]["killed"] == 1
    assert [p["steps"] for p in out["phases"]] == [1, 15, 10] and out["total"]["trials"] == 3
    assert out["equivalents"] == {"cpu_s": 3.0, "steps": 2.6, "examples": round(104 / 40, 3), "wall_s": round(9 / 3, 3)}
    points = out["anytime"]
    assert [p["best"] for p in points] == [0.6, 0.6, 0.7, 0.71]  # the pruned trial's partial score never counts
    assert [p["cpu_equivalents"] for p in points] == [1.5, 2.0, 3.0, 4.0]  # the probe's 1 CPU s comes first
    assert points[-1]["kind"] == "final"
