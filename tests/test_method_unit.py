"""A method is one file plus one registry line: a toy method defined only here is registered through the
public mechanism and goes end to end — YAML design, apply, `lamina params` counts, save/load, merge,
budget sizing, a search space that offers it — with no edit to lamina. The same file is the worked
example of docs/architecture.md ("Adding a method")."""

from __future__ import annotations

import json
from typing import Literal

import pytest
import torch
import transformers as T
from pydantic import StrictInt
from torch import nn
from typer.testing import CliRunner

import lamina
import tiny
from lamina.methods import METHODS, Method, Stage, Strategy, register
from lamina.methods.base import fold


# --- the method: what a new method file holds ------------------------------------------------------------
class Shift(Strategy):
    """Learned offsets added to the first `width` output features of one projection per layer."""

    method: Literal["shift"] = "shift"
    width: StrictInt | None = 4
    target: str = "o"


class ShiftMethod(Method):
    name, schema, stage = "shift", Shift, Stage.BIAS
    size_field, letter = "width", "S"
    search_options = {"target": "o"}

    def build(self, strategy, layers, ctx):
        return nn.ParameterDict({str(l.index): nn.Parameter(torch.zeros(strategy.width)) for l in layers})

    def attach(self, module, strategy, layers, ctx):
        for layer in layers:
            (site,) = ctx.mmap.sites(layer, strategy.target)
            offset = module[str(layer.index)]

            def hook(_m, _args, out, offset=offset):
                if getattr(module, "merged", False) or not ctx.runtime.is_active(ctx.name):
                    return out
                return out + nn.functional.pad(offset, (0, out.shape[-1] - offset.shape[0]))

            ctx.hook(ctx.projection(layer, site), hook)

    def merge(self, module, strategy, layers, ctx, undo):
        for layer in layers:
            (site,) = ctx.mmap.sites(layer, strategy.target)
            bias = ctx.projection(layer, site).bias
            if bias is None:
                return "shift on a projection without a bias"
            fold(module, str(layer.index), bias.data[: strategy.width], module[str(layer.index)].detach(), undo,
                 exact=ctx.exact_merge)
        return None


@pytest.fixture
def shift():
    register(ShiftMethod())  # the one registry line
    yield
    del METHODS["shift"]


# --- end to end ------------------------------------------------------------------------------------------
DESIGN_YAML = """
groups:
  - layers: 0-1
    strategies: [{shift: {width: 3}}]
  - layers: 2-3
    strategies: [shift, {lora: {r: 2}}]
"""


def test_a_method_defined_outside_lamina_goes_end_to_end(shift, tmp_path):
    path = tmp_path / "design.yaml"
    path.write_text(DESIGN_YAML)
    design = lamina.Design.from_file(path)
    assert [s.method for g in design.groups for s in g.strategies] == ["shift", "shift", "lora"]

    model = tiny.model("bert")
    base = {k: v.clone() for k, v in model.state_dict().items()}
    report = lamina.apply(model, path)
    rows = {(r.group, r.method): r.trainable for r in report.rows}
    assert rows[("0", "shift")] == 2 * 3 and rows[("1", "shift")] == 2 * 4
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1)
    expected = tiny.logits(model, tiny.batch("bert")).detach()

    lamina.save(model, tmp_path / "adapter")  # save / load
    fresh = tiny.model("bert")
    lamina.load(fresh, tmp_path / "adapter")
    assert torch.equal(tiny.logits(fresh, tiny.batch("bert")), expected)

    assert lamina.merge(fresh, exact=True) == []  # merge / unmerge
    assert torch.allclose(tiny.logits(fresh, tiny.batch("bert")), expected, atol=1e-6)
    lamina.unmerge(fresh)
    assert all(torch.equal(v, base[k]) for k, v in fresh.state_dict().items() if not k.startswith("lamina"))


def test_params_counts_it_and_the_budget_sizes_it(shift, tmp_path):
    from lamina.cli import app

    config = tmp_path / "config.json"
    config.write_text(json.dumps(T.BertConfig(num_hidden_layers=4, hidden_size=64, num_attention_heads=4,
                                              intermediate_size=128, vocab_size=100).to_dict()))
    design = tmp_path / "d.yaml"
    design.write_text("groups: [{layers: 0-3, strategies: [{shift: {width: null}}]}]\nbudget: {target: 40}\n")
    result = CliRunner().invoke(app, ["params", "--model", str(config), "--design", str(design), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["design"]["groups"][0]["strategies"][0] == {"method": "shift", "width": 10, "target": "o"}
    assert report["budget"]["achieved"] == 40 == report["rows"][0]["trainable"]


def test_a_search_space_offers_it(shift):
    from lamina.search import Point, SearchSpace

    space = SearchSpace.from_dict({"groups": 2, "budget": 800, "strategies": {"choices": ["shift", "bitfit"]}})
    point = Point(grouping="uniform", allocation="uniform", tunable=(1, 2), strategies=(("shift",), ("shift", "bitfit")))
    assert point.label() == "uniform/uniform/G1(S) G2(B+S)"
    report = lamina.apply(tiny.model("bert"), space.design(point, 4), dry_run=True)
    assert {r.method for r in report.rows} == {"shift", "bitfit", "head"}
    assert abs(report.budget["achieved"] - 800) <= report.budget["tolerance"]


def test_unknown_method_names_the_known_ones():
    with pytest.raises(lamina.DesignError, match=r"groups\[0\].strategies\[0\]: unknown method 'shift' \(known: "):
        lamina.Design.from_dict({"groups": [{"layers": 0, "strategies": ["shift"]}]})
