"""The design layer's refusals, exactly: each known gap of the hostile-input corpus (issue 14) as a CLI
run that must end with exit code 2, one `error:` line naming the field and the value (and, for sizes, the
bound), no traceback, and nothing created or changed on disk. Plus the friendly spellings the design
layer accepts instead of refusing (a lone strategy, a design file with no `groups`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fuzz_world import World, build, snapshot
from lamina.cli import app

runner = CliRunner()


def params(w: World, design: str) -> list[str]:
    return ["params", "--model", str(w.model), "--design", design]


def train(w: World, s: Path, design: str, model: Path | None = None) -> list[str]:
    return ["train", "--model", str(model or w.model), "--task", "sst2", "--data-dir", str(w.glue), "--design", design,
            "--output", str(s / "run"), "--no-progress", "--epochs", "1"]


def _without_tokenizer(w: World, s: Path) -> Path:
    model = w.copy(w.model, s / "m")
    for path in model.iterdir():
        if "token" in path.name or path.name in ("vocab.txt", "vocab.json", "merges.txt"):
            path.unlink()
    return model


def _cut_weights(w: World, s: Path) -> Path:
    model = w.copy(w.model, s / "m")
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:3000])
    return model


def _search(w: World, s: Path, *extra: str) -> list[str]:
    return ["search", "--model", str(w.model), "--task", "sst2", "--data-dir", str(w.glue), "--output", str(s / "out"),
            "--train-limit", "8", "--eval-limit", "4", "--max-length", "16", "--batch-size", "4", *extra]


def design_file(s: Path, text: str) -> str:
    path = s / "d.yaml"
    path.write_text(text)
    return str(path)


def adapter_with_groups(w: World, s: Path, groups) -> str:
    folder = w.copy(w.adapter, s / "ad")
    info = json.loads((folder / "design.json").read_text())
    info["design"]["groups"] = groups
    (folder / "design.json").write_text(json.dumps(info))
    return str(folder)


# (id, argv builder, substrings the one error line must hold)
REFUSALS = [
    # sizes bounded by what the model can hold (the tiny model: 64 positions, hidden size 32)
    ("prefix-length-beyond-positions", lambda w, s: params(w, "prefix:length=100000"),
     ["strategies[0].length", "100000", "64 positions", "max_position_embeddings", "at most 64"]),
    ("prefix-length-beyond-positions-train", lambda w, s: train(w, s, "prefix:length=65"),
     ["length", "65", "64 positions", "at most 64"]),
    ("unipelt-prefix-length", lambda w, s: params(w, "unipelt:prefix_length=100000"), ["length", "100000", "64 positions"]),
    ("prefix-length-in-a-file", lambda w, s: params(w, design_file(s, "groups: [{layers: 0-1, strategies: [{prefix: {length: 99}}]}]\n")),
     ["d.yaml", "groups[0].strategies[0].length", "99", "64 positions"]),
    ("prompt-length-fills-positions", lambda w, s: params(w, "prompt:length=64"), ["prompt.length", "64", "at most 63"]),
    # zero is a value, not "not given" (the falsy-check bug)
    ("adapter-bottleneck-0", lambda w, s: params(w, "adapter:bottleneck=0"), ["preset 'adapter'", "bottleneck must be > 0", "got 0"]),
    ("adapter-bottleneck-0-train", lambda w, s: train(w, s, "adapter:bottleneck=0"), ["bottleneck must be > 0"]),
    ("unipelt-bottleneck-0", lambda w, s: params(w, "unipelt:bottleneck=0"), ["preset 'unipelt'", "bottleneck must be > 0"]),
    ("adapter-both-sizes", lambda w, s: params(w, "adapter:bottleneck=8,reduction_factor=4"), ["either bottleneck or reduction_factor"]),
    # preset options are typed: a user error, never an internal one
    ("spafit-n1-word", lambda w, s: params(w, "spafit:n1=a"), ["preset 'spafit'", "n1", "valid integer", "'a'"]),
    ("spafit-n2-float", lambda w, s: params(w, "spafit:n2=2.5"), ["preset 'spafit'", "n2", "valid integer", "2.5"]),
    ("spafit-n1-word-train", lambda w, s: train(w, s, "spafit:n1=a"), ["n1", "'a'"]),
    ("lora-alpha-bool", lambda w, s: params(w, "lora:alpha=true"), ["alpha", "valid number", "True"]),
    ("lora-alpha-nan", lambda w, s: params(w, "lora:alpha=nan"), ["alpha", "finite", "nan"]),
    ("unknown-option-lists-options", lambda w, s: params(w, "dora:rank=4"),
     ["preset 'dora'", "unknown option 'rank'", "options: r, alpha"]),
    ("option-given-twice", lambda w, s: params(w, "lora:r=8,r=9"), ["option 'r' is given twice"]),
    ("fixed-option", lambda w, s: params(w, "dora:dora=false"), ["preset 'dora'", "option 'dora' is fixed"]),
    ("comma-in-a-list", lambda w, s: params(w, "lora:targets=q,v"), ["'v' is not key=value", "list items by '+'"]),
    # duplicate targets, in presets and in files
    ("lora-duplicate-targets", lambda w, s: params(w, "lora:targets=q+q"), ["targets", "'q' is listed twice"]),
    ("lora-duplicate-targets-file", lambda w, s: params(w, design_file(s, "groups: [{layers: 0-1, strategies: [{lora: {targets: [v, q, v]}}]}]\n")),
     ["groups[0].strategies[0].targets", "'v' is listed twice"]),
    ("ia3-duplicate-targets", lambda w, s: params(w, "ia3:targets=k+ffn+k"), ["targets", "'k' is listed twice"]),
    # alpha > 0
    ("lora-alpha-negative", lambda w, s: params(w, "lora:alpha=-1"), ["alpha", "greater than 0", "-1"]),
    ("lora-alpha-zero-file", lambda w, s: params(w, design_file(s, "groups: [{layers: 0-1, strategies: [{lora: {alpha: 0}}]}]\n")),
     ["groups[0].strategies[0].alpha", "greater than 0", "got 0"]),
    ("lora-alpha-negative-train", lambda w, s: train(w, s, "lora:alpha=-1"), ["alpha", "greater than 0"]),
    # the shape of design fields
    ("groups-a-number-in-design-json", lambda w, s: ["eval", "--adapter", adapter_with_groups(w, s, 3), "--task", "sst2",
                                                     "--data-dir", str(w.glue)],
     ["design.json", "groups", "must be a list of groups", "not a number (3)"]),
    ("groups-a-number-in-yaml", lambda w, s: params(w, design_file(s, "groups: 3\n")), ["d.yaml", "groups: must be a list", "(3)"]),
    ("groups-a-string", lambda w, s: params(w, design_file(s, "groups: lora\n")), ["groups: must be a list", "'lora'"]),
    ("group-a-list", lambda w, s: params(w, design_file(s, "groups: [[0, 1]]\n")), ["groups[0]: must be a mapping", "not a list"]),
    ("strategies-a-number", lambda w, s: params(w, design_file(s, "groups: [{layers: 0-1, strategies: 5}]\n")),
     ["groups[0].strategies: must be a list of strategies", "(5)"]),
    ("prompt-a-number", lambda w, s: params(w, design_file(s, "prompt: 5\n")), ["prompt: must be a mapping", "(5)"]),
    ("budget-a-string", lambda w, s: params(w, design_file(s, "budget: 0.5%\n")), ["budget: must be a mapping", "target"]),
    ("reduction-factor-nan", lambda w, s: params(w, design_file(s, "groups: [{layers: 0-1, strategies: [{adapter: {reduction_factor: .nan}}]}]\n")),
     ["reduction_factor", "finite"]),
    # plain budget messages (no exception class names)
    ("lora-budget-0", lambda w, s: params(w, "lora:budget=0"), ["preset 'lora'", "budget", "must be > 0", "got 0"]),
    ("lora-budget-word", lambda w, s: params(w, "lora:budget=lots"), ["preset 'lora'", "budget", "'lots'"]),
    ("lora-budget-allocation", lambda w, s: params(w, "lora:budget=500,allocation=sideways"), ["allocation", "'sideways'"]),
    ("s4-budget-nan-percent", lambda w, s: params(w, "s4:budget=nan%"), ["budget", "not a finite number"]),
    ("budget-on-a-fixed-size-preset", lambda w, s: params(w, "bitfit:budget=500"), ["preset 'bitfit'", "no size to solve"]),
    # found by the fresh corpus (tests/test_fuzz_fresh.py)
    ("two-methods-in-one-item", lambda w, s: params(w, design_file(s, "groups: [{layers: 0-1, strategies: [{lora: {}, ia3: {}}]}]\n")),
     ["groups[0].strategies[0]", "one strategy per item", "lora, ia3"]),
    ("strategy-null", lambda w, s: params(w, design_file(s, "groups: [{layers: 0-1, strategies: [null]}]\n")),
     ["groups[0].strategies[0]: empty"]),
    ("predict-num-beams-0", lambda w, s: ["predict", "-a", str(w.adapter), "-i", str(w.text / "dev.jsonl"), "--num-beams", "0"],
     ["--num-beams must be >= 1", "got 0"]),
    ("report-storage-missing-creates-nothing", lambda w, s: ["report", "study", "--storage", f"sqlite:///{s / 'none.db'}",
                                                              "-o", str(s / "rep")], ["none.db", "no such database file"]),
    ("search-threads-0", lambda w, s: ["search", "-m", str(w.model), "-t", "sst2", "--data-dir", str(w.glue), "-o", str(s / "o"),
                                       "--threads", "0"], ["--threads must be >= 1"]),
    ("suggest-methods-twice", lambda w, s: ["suggest", "-m", str(w.model), "-t", "sst2", "--data-dir", str(w.glue), "-o",
                                            str(s / "o"), "--methods", "lora+adapter+lora"], ["methods", "'lora' is listed twice"]),
    # found by an independent hostile corpus kept outside the project (after the fuzz suites above)
    ("design-nested-too-deeply", lambda w, s: params(w, design_file(s, "[" * 100000 + "]" * 100000)),
     ["d.yaml", "nested too deeply"]),
    ("group-without-strategies", lambda w, s: params(w, design_file(s, "groups: [{layers: 0-1, strategies: []}]\n")),
     ["layers 0-1 have no strategies", "leave them out"]),
    ("config-nan", lambda w, s: train(w, s, "lora", model=w.edit_json(w.copy(w.model, s / "m") / "config.json",
                                                                        lambda d: {**d, "layer_norm_eps": float("nan")}).parent),
     ["config.json", "'layer_norm_eps' is nan", "finite"]),
    ("model-without-tokenizer", lambda w, s: train(w, s, "lora", model=_without_tokenizer(w, s)), ["no tokenizer files"]),
    ("model-corrupt-safetensors", lambda w, s: train(w, s, "lora", model=_cut_weights(w, s)),
     ["cannot load model", "model.safetensors is not a valid safetensors file"]),
    ("num-labels-beyond-a-head", lambda w, s: params(w, "lora") + ["--num-labels", "100000000000"],
     ["--num-labels", "between 1", "100,000", "100,000,000,000"]),
    ("auto-budget-word", lambda w, s: train(w, s, "auto:budget=abc"), ["budget", "'abc'", "not a parameter count"]),
    ("search-penalty-nan", lambda w, s: _search(w, s, "--strategy", "one-shot", "--penalty", "nan"), ["--penalty", "nan"]),
    ("search-empty-study", lambda w, s: _search(w, s, "--study", ""), ["--study", "empty name"]),
    ("config-vocab-not-the-weights", lambda w, s: train(w, s, "lora", model=w.edit_json(
        w.copy(w.model, s / "m") / "config.json", lambda d: {**d, "vocab_size": 10}).parent),
     ["model.safetensors", "word_embeddings", "config.json makes it [10,", "does not describe these weights"]),
    ("peft-layers-beyond-the-base", lambda w, s: ["import-peft", "--adapter", str(w.edit_json(
        w.copy(w.peft, s / "p") / "adapter_config.json", lambda d: {**d, "layers_to_transform": [0, 9]}).parent),
        "--output", str(s / "imported")], ["adapter_config.json", "layers_to_transform lists layer 9", "has 4 layers"]),
    ("search-space-budget-bool", lambda w, s: _search(w, s, "--space", design_file(s, "budget: true\n")),
     ["budget", "not True"]),
    ("search-data-dirs-per-task", lambda w, s: _search(w, s, "--data-dir", str(w.glue)), ["--data-dir", "not 2"]),
    ("unipelt-prefix-length-0", lambda w, s: params(w, "unipelt:prefix_length=0"), ["preset 'unipelt'", "prefix_length:", "got 0"]),
    ("text-without-dev-file", lambda w, s: ["train", "--model", str(w.model), "--task", "text", "--train-file",
                                            str(w.text / "train.jsonl"), "--design", "lora", "--output", str(s / "run")],
     ["no validation file given", "--dev-file"]),
]


@pytest.mark.parametrize("argv,expected", [pytest.param(a, e, id=i) for i, a, e in REFUSALS])
def test_refused_with_one_line_naming_field_and_value(argv, expected, world: World, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.chdir(scratch)
    args = argv(world, scratch)
    before = snapshot(world.root, scratch)
    result = runner.invoke(app, args)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (result.exit_code, result.output[-3000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    assert "Traceback" not in result.output and "Error)" not in lines[0], lines[0]
    for part in expected:
        assert part in lines[0], (part, lines[0])
    assert snapshot(world.root, scratch) == before, "the command created or changed files"


def test_budget_message_is_plain(world: World):
    result = runner.invoke(app, params(world, "lora:budget=0"))
    assert "ValidationError" not in result.stderr and "ValueError" not in result.stderr


@pytest.mark.parametrize("lone", ["lora", "{lora: {r: 4}}"])
def test_a_lone_strategy_is_a_one_item_list(lone, world: World, tmp_path):
    """Accepted, not refused: `strategies: lora` means `strategies: [lora]` (never read letter by letter)."""
    import lamina

    alone = lamina.Design.from_file(Path(design_file(tmp_path, f"groups: [{{layers: 0-1, strategies: {lone}}}]\n")))
    listed = lamina.Design.from_file(Path(design_file(tmp_path, f"groups: [{{layers: 0-1, strategies: [{lone}]}}]\n")))
    assert alone == listed and [s.method for s in alone.groups[0].strategies] == ["lora"]
    result = runner.invoke(app, params(world, design_file(tmp_path, f"groups: [{{layers: 0-1, strategies: {lone}}}]\n")))
    assert result.exit_code == 0, result.output


def test_adapter_defaults_to_reduction_factor_16():
    import lamina

    (strategy,) = lamina.presets.build("adapter", 4, 32).groups[0].strategies
    assert (strategy.bottleneck, strategy.reduction_factor) == (None, 16)
    (strategy,) = lamina.presets.build("adapter:bottleneck=4", 4, 32).groups[0].strategies
    assert (strategy.bottleneck, strategy.reduction_factor) == (4, None)
