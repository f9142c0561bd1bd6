"""Designs: parsing from YAML/JSON/dict/CLI strings, validation errors that name the field, grouping
patterns, and the budget solver (target vs achieved)."""

import json

import pytest
import transformers as T

import lamina
import tiny
from lamina import Design, DesignError
from lamina.arch import meta_model
from lamina.design import split_layers
from lamina.presets import parse

YAML = """
name: mine
groups:
  - layers: 0-1
    strategies: [bitfit]
  - layers: [2, 3]
    strategies:
      - lora: {r: 4, targets: q+v}
      - method: adapter
        bottleneck: 8
prompt: {length: 5}
train_head: true
"""


def test_yaml_json_dict_and_python_agree(tmp_path):
    (tmp_path / "d.yaml").write_text(YAML)
    from_yaml = Design.from_file(tmp_path / "d.yaml")
    (tmp_path / "d.json").write_text(from_yaml.to_json())
    from_json = Design.from_file(tmp_path / "d.json")
    python = Design(
        name="mine",
        groups=(
            lamina.Group(first=0, last=1, strategies=(lamina.BitFit(),)),
            lamina.Group(first=2, last=3, strategies=(lamina.LoRA(r=4, targets=("q", "v")), lamina.Adapter(bottleneck=8))),
        ),
        prompt=lamina.Prompt(length=5),
    )
    assert from_yaml == from_json == python == Design.from_dict(json.loads(python.to_json()))
    python.save(tmp_path / "out.yaml")
    assert Design.from_file(tmp_path / "out.yaml") == python


def test_cli_strings():
    assert parse("spafit:n1=8,n2=16") == ("spafit", {"n1": 8, "n2": 16})
    assert parse("lora:r=8,targets=q+v") == ("lora", {"r": 8, "targets": "q+v"})
    model = tiny.model("bert")
    report = lamina.apply(model, "lora:r=2,targets=q+k", dry_run=True)
    assert report.design.groups[0].strategies[0].targets == ("q", "k")


@pytest.mark.parametrize(
    "spec,field",
    [
        ({"groups": [{"layers": "0-2", "strategies": ["bitfit"]}, {"layers": "2-3", "strategies": ["ln"]}]}, "overlap"),
        ({"groups": [{"layers": "0-9", "strategies": ["bitfit"]}]}, "groups[0].last"),
        ({"groups": [{"layers": "0-1", "strategies": [{"lora": {"targets": "q+nope"}}]}]}, "unknown target 'nope'"),
        ({"groups": [{"layers": "0-1", "strategies": ["dora"]}]}, "unknown method 'dora'"),
        ({"groups": [{"layers": "0-1", "strategies": [{"lora": {"r": 0}}]}]}, "r"),
        ({"groups": [{"layers": "0-1", "strategies": [{"adapter": {"bottleneck": -4}}]}]}, "bottleneck must be > 0"),
        ({"groups": [{"layers": "0-1", "strategies": [{"prefix": {"length": 0}}]}]}, "length"),
        ({"groups": [{"layers": "3-1", "strategies": ["bitfit"]}]}, "not a range"),
        ({"groups": [{"layers": "x", "strategies": ["bitfit"]}]}, "groups[0].layers"),
        ({"groups": [{"layers": "0-1", "strategies": ["bitfit", "bitfit"]}]}, "appears twice"),
        ({"groups": [{"layers": "0-1", "strategies": [{"lora": {"rank": 4}}]}]}, "rank"),
        ("spafit:n1=3,n2=2", "n1"),
        ("spafit:n1=1,n2=4", "spafit.n2"),
        ("nope:x=1", "unknown preset 'nope'"),
        ("lora:banana=3", "banana"),
        ({"groups": [{"layers": "0-1", "strategies": [{"lora": {"r": None}}]}]}, "no size"),
        ({"budget": {"target": "abc"}}, "budget"),
    ],
)
def test_bad_designs_name_the_field(spec, field):
    with pytest.raises(DesignError) as err:
        lamina.apply(tiny.model("bert"), spec, dry_run=True)
    assert field in str(err.value)
    assert "\n" not in str(err.value)


def test_unsupported_model_names_supported_families():
    model = T.AutoModelForSequenceClassification.from_config(
        T.DistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=37, vocab_size=50)
    )
    with pytest.raises(DesignError, match="unsupported model type 'distilbert'; supported: .*bert.*gpt2.*llama"):
        lamina.apply(model, "lora")


def test_stack_relative_groups_on_t5():
    model = tiny.model("t5")  # 2 encoder + 2 decoder blocks: global 0-1 encoder, 2-3 decoder
    report = lamina.apply(model, {"groups": [{"layers": "0-1", "stack": "decoder", "strategies": ["ln"]}]})
    assert report.rows[0].layers == "decoder 0-1"
    names = lamina.trainable_names(model)
    assert {n.split(".")[5] for n in names if ".ln." in n} == {"2", "3"}
    with pytest.raises(DesignError, match="decoder stack has 2 layers"):
        lamina.apply(tiny.model("t5"), {"groups": [{"layers": "1-2", "stack": "decoder", "strategies": ["ln"]}]}, dry_run=True)


@pytest.mark.parametrize(
    "layers,k,pattern,sizes",
    [
        (12, 4, "uniform", [3, 3, 3, 3]),
        (12, 4, "spindle", [2, 4, 4, 2]),
        (12, 4, "bottleneck", [4, 2, 2, 4]),
        (12, 4, "increasing", [1, 2, 4, 5]),  # exact 1.2, 2.4, 3.6, 4.8: floors 1,2,3,4 + largest remainders
        (12, 4, "decreasing", [5, 4, 2, 1]),
        (24, 4, "spindle", [4, 8, 8, 4]),
        (6, 4, "spindle", [1, 2, 2, 1]),
        (7, 3, "uniform", [2, 2, 3]),  # ties go to the later group
        (4, 4, "increasing", [1, 1, 1, 1]),  # every group keeps a layer
    ],
)
def test_grouping_patterns(layers, k, pattern, sizes):
    bounds = split_layers(layers, k, pattern)
    assert [b - a + 1 for a, b in bounds] == sizes
    assert bounds[0][0] == 0 and bounds[-1][1] == layers - 1
    assert all(bounds[i][1] + 1 == bounds[i + 1][0] for i in range(k - 1))


def test_grouping_rejects_too_few_layers():
    with pytest.raises(DesignError):
        split_layers(3, 4, "uniform")


@pytest.mark.parametrize("allocation", ["uniform", "increasing", "decreasing"])
@pytest.mark.parametrize("target", ["0.5%", "1%", 400_000])
def test_budget_solver_hits_target(allocation, target):
    model = meta_model(T.BertConfig())
    report = lamina.apply(model, f"s4:budget={target},allocation={allocation}", dry_run=True)
    b = report.budget
    assert abs(b["achieved"] - b["target"]) <= b["tolerance"]
    assert b["achieved"] == report.trainable - report.head_trainable
    sizes = [s for g in report.design.groups for s in g.strategies if s.method in ("lora", "adapter", "prefix")]
    assert all((getattr(s, "r", None) or getattr(s, "bottleneck", None) or s.length) >= 1 for s in sizes)


def test_budget_allocation_shapes_sizes():
    model = meta_model(T.BertConfig())
    spec = {
        "groups": [{"layers": f"{a}-{a + 2}", "strategies": [{"lora": {"r": None}}]} for a in (0, 3, 6, 9)],
        "budget": {"target": 600_000, "allocation": "increasing"},
    }
    ranks = [g.strategies[0].r for g in lamina.apply(model, spec, dry_run=True).design.groups]
    assert ranks == sorted(ranks) and ranks[0] < ranks[-1]
    spec["budget"]["allocation"] = "uniform"
    uniform = [g.strategies[0].r for g in lamina.apply(model, spec, dry_run=True).design.groups]
    assert max(uniform) - min(uniform) <= 1


def test_budget_too_small_is_an_error():
    with pytest.raises(DesignError, match="budget.target"):
        lamina.apply(meta_model(T.BertConfig()), "s4:budget=100", dry_run=True)
