"""`lamina suggest`: probe signals on every family, allocation within the budget, grouping, determinism,
the 2 % probe cap, the evidence files, CLI errors, and `auto:` designs in a training run."""

from __future__ import annotations

import json

import pytest
import torch
import transformers as T
from typer.testing import CliRunner

import lamina
import tiny
from lamina.cli import app
from lamina.design import Design, DesignError
from lamina.inject import adapters_of
from lamina.suggest import (
    PROBE_FRACTION, is_auto, parse_auto, planned_steps, probe_steps_for, suggest, suggest_from_batches,
)
from lamina.suggest.allocate import group_cells
from lamina.suggest.probe import ProbeResult
from test_train import make_model_dir, write_sst2

runner = CliRunner()
BUDGET = "20%"  # tiny models have ~33K parameters: at 0.5 % not even one cell fits, at 5 % only fixed-cost ones


def classifier(family: str, seed: int = 0):
    """A tiny random sequence classifier of `family` (T5 and BART too: *ForSequenceClassification)."""
    if family not in tiny.SEQ2SEQ:
        return tiny.model(family, seed=seed, num_labels=2)
    torch.manual_seed(seed)
    cfg = tiny.config(family)
    cfg.num_labels = 2
    return T.AutoModelForSequenceClassification.from_config(cfg).eval()


def labelled_batches(family: str, n: int = 4, size: int = 6, seed: int = 0) -> list[dict]:
    """Random token batches whose label is whether token 7 occurs (learnable, so gradients carry signal)."""
    batches = []
    for i in range(n):
        seq2seq = family in tiny.SEQ2SEQ
        batch = tiny.batch(family, seed=seed + i, size=size, length=10, pad_last=0 if seq2seq else 3)
        batch.pop("decoder_input_ids", None)
        batch["input_ids"][::2, 2] = 7
        if seq2seq:  # T5's / BART's classifier reads the representation at the end-of-sequence token
            batch["input_ids"][:, -1] = tiny.config(family).eos_token_id
        batch["labels"] = (batch["input_ids"] == 7).any(1).long()
        batches.append(batch)
    return batches


def within_budget(model, s) -> dict:
    """The solver's report is within its tolerance, and the saved (sized) design trains exactly that."""
    budget = s.allocation.budget
    assert budget is not None and abs(budget["achieved"] - budget["target"]) <= budget["tolerance"], budget
    report = lamina.apply(model, s.design, dry_run=True)
    assert report.trainable - report.head_trainable == budget["achieved"]
    return budget


@pytest.mark.parametrize("family", tiny.FAMILIES)
def test_every_family_gives_a_valid_design_within_budget(family):
    model = classifier(family)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s = suggest_from_batches(model, labelled_batches(family), BUDGET, seed=0)
    # every candidate the family supports gave a usable (non-zero) signal in every layer
    expected = {"lora", "adapter", "bitfit", "ln"} | ({"prefix"} if family != "deberta-v2" else set())
    assert set(s.probe.methods) == expected
    if family == "deberta-v2":
        assert any(n.startswith("prefix left out") for n in s.notes)
    assert all(stats["fisher"] > 0 for stats in s.probe.stats.values()), s.probe.stats
    assert all(s.probe.cost[c] > 0 for c in s.probe.cost)
    # an ordinary design, sized by the solver to the budget, that builds and trains on a fresh model
    assert s.design.groups and all(g.strategies for g in s.design.groups)
    within_budget(model, s)
    fresh = classifier(family, seed=1)
    report = lamina.apply(fresh, s.design)
    assert sum(p.numel() for p in fresh.parameters() if p.requires_grad) == report.trainable
    # the probed model is left as it was: no adapter, nothing trainable added, same weights
    assert not adapters_of(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_same_seed_same_design_and_signals():
    first = suggest_from_batches(classifier("bert"), labelled_batches("bert"), BUDGET, seed=3)
    second = suggest_from_batches(classifier("bert"), labelled_batches("bert"), BUDGET, seed=3)
    assert first.design.to_dict() == second.design.to_dict()
    assert first.probe.stats == second.probe.stats
    other = suggest_from_batches(classifier("bert"), labelled_batches("bert", seed=50), BUDGET, seed=4)
    assert other.probe.stats != first.probe.stats  # the seed and the batches do reach the signals


def test_zero_initialised_parts_get_gradients_at_the_start():
    """LoRA's B, the adapter's up projection, BitFit and LN deltas start at zero: the probe still
    measures them, and |g·theta| (Taylor) is zero exactly for them, which is why it is not the default."""
    s = suggest_from_batches(classifier("roberta"), labelled_batches("roberta"), BUDGET, seed=0)
    for (layer, method), stats in s.probe.stats.items():
        assert stats["fisher"] > 0 and stats["adam"] >= 0 and stats["grad2"] >= 0, (layer, method, stats)
        assert (stats["taylor"] == 0) == (method != "prefix"), (layer, method, stats)
    # (the noise-corrected signals may be 0 on random tiny models: see the MiniLM test for real data)


def fake_probe(layers: int, stacks=None) -> ProbeResult:
    methods = ("lora", "bitfit")
    cells = [(i, m) for i in range(layers) for m in methods]
    return ProbeResult(list(range(layers)), stacks or ["encoder"] * layers, methods, {"lora": 2},
                       dict.fromkeys(cells, 10), {c: {"adam": 1.0} for c in cells}, dict.fromkeys(range(layers), 0.1))


def test_consecutive_equal_layers_form_one_group():
    chosen = {(0, "bitfit"), (1, "bitfit"), (3, "lora"), (3, "bitfit"), (4, "lora"), (4, "bitfit"), (5, "lora")}
    design = group_cells(chosen, fake_probe(6), "auto")
    got = [(g.first, g.last, tuple(s.method for s in g.strategies)) for g in design.groups]
    assert got == [(0, 1, ("bitfit",)), (3, 4, ("lora", "bitfit")), (5, 5, ("lora",))]  # layer 2 frozen
    # a group never spans the encoder / decoder boundary
    stacked = group_cells({(i, "bitfit") for i in range(4)}, fake_probe(4, ["encoder"] * 2 + ["decoder"] * 2), "auto")
    assert [(g.first, g.last) for g in stacked.groups] == [(0, 1), (2, 3)]


def test_the_probe_never_takes_more_than_two_percent_of_the_planned_steps():
    for planned in (50, 51, 99, 100, 375, 1_000, 12_345):
        steps = probe_steps_for(planned)
        assert 1 <= steps <= PROBE_FRACTION * planned
    assert probe_steps_for(1_000, 20) == 20
    with pytest.raises(DesignError, match="more than 2 %"):
        probe_steps_for(1_000, 21)
    with pytest.raises(DesignError, match="less than one probe batch"):
        probe_steps_for(49)
    # the Trainer's own arithmetic: batches per epoch // accumulation, times epochs (or max_steps)
    assert planned_steps(96, 16, epochs=2) == 12
    assert planned_steps(100, 16, epochs=3, grad_accum=2) == 9
    assert planned_steps(100, 16, max_steps=7) == 7


def test_auto_strings():
    assert is_auto("auto") and is_auto(" auto:budget=1%") and not is_auto("lora:budget=0.5%") and not is_auto(None)
    o = parse_auto("auto:budget=1%,methods=lora+ln,probe_steps=8,seed=2,signal=fisher,prior=depth")
    assert o == {"budget": "1%", "methods": ("lora", "ln"), "probe_steps": 8, "seed": 2, "signal": "fisher",
                 "prior": "depth"}
    assert parse_auto("auto")["budget"] == "0.5%" and parse_auto("auto")["seed"] is None
    for bad, message in (("auto:methods=lora+dora", "unknown method 'dora'"), ("auto:rank=3", "not one of"),
                         ("auto:probe_steps=x", "not an integer"), ("auto:signal=loss", "unknown signal"),
                         ("auto:prior=magic", "unknown prior"), ("auto:probe_steps=0", ">= 1")):
        with pytest.raises(DesignError, match=message):
            parse_auto(bad)


def test_one_candidate_method_gives_its_uniform_design():
    """Each sized cell costs one uniform slot (budget / layers), so with LoRA the only candidate the
    suggestion is exactly `lora:budget=...`: it departs from a uniform design only where signals differ."""
    model = classifier("llama")
    s = suggest_from_batches(model, labelled_batches("llama"), BUDGET, methods="lora", seed=0)
    uniform = lamina.apply(model, f"lora:budget={BUDGET}", dry_run=True).design
    assert [(g.first, g.last) for g in s.design.groups] == [(0, tiny.LAYERS - 1)]
    assert s.design.groups[0].strategies == uniform.groups[0].strategies


def test_fixed_cost_methods_alone_leave_part_of_the_budget_with_a_note():
    s = suggest_from_batches(classifier("bert"), labelled_batches("bert"), BUDGET, methods="bitfit+ln", seed=0)
    assert s.allocation.budget is None and any("only fixed-cost methods" in n for n in s.notes)
    assert {m for _, m in s.allocation.chosen} == {"bitfit", "ln"}


def test_budget_too_small_for_any_cell_is_an_error():
    with pytest.raises(DesignError, match="too small for any cell"):
        suggest_from_batches(classifier("bert"), labelled_batches("bert"), 10)


# --------------------------------------------------------------------------- files, CLI, training


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("suggest")
    return make_model_dir(root), write_sst2(root, n_train=96, n_dev=16)


def test_same_seed_same_signals_from_files_whatever_ran_before(tiny_data):
    """The head of the fresh model copy is random: `suggest` seeds it too, so the global random state
    (what ran before in the process) does not change the signals, and the train hook agrees with it."""
    from lamina.evaluate import load_split, resolve_task
    from lamina.suggest import suggest_for_run

    _, data = tiny_data
    model = str(data.parent / "base-only")  # a backbone without a classifier, like MiniLM's folder
    if not (data.parent / "base-only" / "config.json").is_file():
        full = T.AutoModelForSequenceClassification.from_pretrained(tiny_data[0])
        full.bert.save_pretrained(model)
        T.AutoTokenizer.from_pretrained(tiny_data[0]).save_pretrained(model)
    kw = dict(probe_steps=2, for_steps=100, batch_size=8, max_length=16, seed=4)
    first = lamina.suggest(model, "sst2", data, BUDGET, **kw)
    torch.manual_seed(123)
    torch.rand(7)
    second = lamina.suggest(model, "sst2", data, BUDGET, **kw)
    assert first.probe.stats == second.probe.stats
    spec, path = resolve_task("sst2", data)
    _, record = suggest_for_run("auto:budget=20%,probe_steps=2", model, spec, load_split(spec, path, "train")[0],
                                tiny_data[1].parent / "hook", batch_size=8, max_length=16, doc_stride=128, epochs=3,
                                max_steps=100, grad_accum=1, seed=4)
    saved = json.loads((tiny_data[1].parent / "hook" / "suggest" / "signals.json").read_text())
    assert [[c["fisher"] for c in l["cells"].values()] for l in saved["layers"]] == \
        [[first.probe.stats[(l, m)]["fisher"] for m in first.probe.methods] for l in first.probe.layers]


def test_python_api_saves_the_evidence(tiny_data, tmp_path):
    model, data = tiny_data
    s = lamina.suggest(model, "sst2", data, BUDGET, probe_steps=3, batch_size=8, max_length=16, seed=1,
                       output_dir=tmp_path / "out")
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["design.yaml", "heatmap.png", "signals.json", "suggest.md"]
    assert Design.from_file(out / "design.yaml") == s.design
    assert (out / "heatmap.png").read_bytes()[:4] == b"\x89PNG"
    signals = json.loads((out / "signals.json").read_text())
    assert [l["layer"] for l in signals["layers"]] == list(range(tiny.LAYERS))
    assert set(signals["layers"][0]["cells"]) == set(s.probe.methods)
    assert signals["probe"]["steps"] == 3 and signals["probe"]["examples"] == 24
    chosen = {(l["layer"], m) for l in signals["layers"] for m, c in l["cells"].items() if c["chosen"]}
    assert chosen == s.allocation.chosen
    md = (out / "suggest.md").read_text()
    assert "Value per parameter" in md and "budget: target" in md and "heatmap.png" in md


def test_cli_prints_the_table_and_writes_the_folder(tiny_data, tmp_path):
    model, data = tiny_data
    result = runner.invoke(app, ["suggest", "--model", model, "--task", "sst2", "--data-dir", str(data), "--budget",
                                 BUDGET, "--methods", "lora+bitfit", "--for-steps", "200", "--batch-size", "8",
                                 "--max-length", "16", "--output", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert "lora" in result.output and "budget: target" in result.output and "probe: 4 batches" in result.output
    signals = json.loads((tmp_path / "s" / "signals.json").read_text())
    assert signals["probe"]["planned_steps"] == 200 and signals["probe"]["steps"] == 4
    assert set(signals["layers"][0]["cells"]) == {"lora", "bitfit"}


def _one_line_error(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.stderr
    return lines[0]


def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(tiny_data, tmp_path):
    model, data = tiny_data
    out = tmp_path / "never"

    def run(*extra, task="sst2", data_dir=data):
        return runner.invoke(app, ["suggest", "-m", model, "-t", task, "--data-dir", str(data_dir), "--batch-size", "8",
                                   "--max-length", "16", "--probe-steps", "2", "-o", str(out), *extra])

    assert "unknown method 'dora'" in _one_line_error(run("--methods", "lora+dora"))
    assert "too small for any cell" in _one_line_error(run("--budget", "10"))
    assert "not a parameter count or a percentage" in _one_line_error(run("--budget", "lots"))
    assert "unknown task 'sst3'" in _one_line_error(run(task="sst3"))
    empty = tmp_path / "empty" / "SST-2"
    empty.mkdir(parents=True)
    (empty / "train.tsv").write_text("sentence\tlabel\n")
    (empty / "dev.tsv").write_text("sentence\tlabel\ngood \t1\n")
    assert "empty dataset" in _one_line_error(run(data_dir=empty.parent))
    assert "more than 2 %" in _one_line_error(run("--for-steps", "60"))
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".never")]


def test_auto_design_in_a_training_run(tiny_data, tmp_path):
    from lamina.evaluate import load_split, resolve_task
    from lamina.suggest import suggest_for_run
    from lamina.train import train

    model, data = tiny_data
    out = tmp_path / "run"
    auto = "auto:budget=20%,methods=lora+adapter+bitfit"
    results = train(model, "sst2", auto, data, out, max_steps=150, batch_size=4, max_length=16, lr=1e-2,
                    eval_steps=75, progress=False, seed=5)
    s = results["suggest"]
    assert s["planned_steps"] == results["global_step"] == 150  # the probe planned with the Trainer's count
    assert s["steps"] == 3 == int(PROBE_FRACTION * 150) and s["batch_size"] == 4 and s["max_length"] == 16
    assert s["wall_s"] > 0 and s["cpu_s"] > 0 and s["probe_wall_s"] <= s["wall_s"]
    assert results["design"]["name"] == "auto" and results["design"] == s["design"]
    assert Design.from_file(out / "suggest" / "design.yaml").to_dict() == results["design"]
    assert (out / "suggest" / "heatmap.png").is_file() and (out / "design.json").is_file()
    assert abs(s["budget"]["achieved"] - s["budget"]["target"]) <= s["budget"]["tolerance"]
    # the run's seed seeds the probe: the same run suggests the same design again (and resuming reuses it)
    spec, path = resolve_task("sst2", data)
    examples = load_split(spec, path, "train")[0]
    options = dict(batch_size=4, max_length=16, doc_stride=128, epochs=3, max_steps=150, grad_accum=1, seed=5)
    again, record = suggest_for_run(auto, model, spec, examples, tmp_path / "again", **options)
    assert again.to_dict() == results["design"] and record["steps"] == 3
    reused, record = suggest_for_run(auto, model, spec, examples, out, resume=True, **options)
    assert reused.to_dict() == results["design"] and record["reused"] and record["steps"] == s["steps"]
    assert {k: v for k, v in record.items() if k != "reused"} == {k: v for k, v in s.items() if k != "reused"}
    assert suggest_for_run("lora:r=2", model, spec, examples, out, **options) == ("lora:r=2", None)


def test_auto_design_on_a_run_too_short_for_a_probe(tiny_data, tmp_path):
    from lamina.errors import LaminaError
    from lamina.train import train

    model, data = tiny_data
    with pytest.raises(LaminaError, match="less than one probe batch"):
        train(model, "sst2", "auto:budget=20%", data, tmp_path / "short", epochs=1, batch_size=16, progress=False)
    assert not (tmp_path / "short").exists()


@pytest.mark.slow
def test_minilm_on_real_sst2(shared_data, tmp_path):
    """The real model on real data: every candidate gives a signal, the design meets the budget."""
    from lamina.evaluate import default_model

    s = lamina.suggest(default_model(), "sst2", shared_data / "glue", "0.5%", for_steps=1000, batch_size=16,
                       max_length=64, train_limit=2000, output_dir=tmp_path / "minilm")
    assert s.probe.steps == 20 and s.probe.layers == list(range(6))
    assert all(stats["fisher"] > 0 for stats in s.probe.stats.values())
    for method in s.probe.methods:  # on real data, noise removed, every method has signal somewhere
        assert any(s.probe.stats[(layer, method)]["adam"] > 0 for layer in s.probe.layers), method
    budget = s.allocation.budget
    assert abs(budget["achieved"] - budget["target"]) <= budget["tolerance"] and budget["target"] == 112_827
    assert any(m in ("lora", "adapter", "prefix") for _, m in s.allocation.chosen)
    assert (tmp_path / "minilm" / "heatmap.png").is_file()
