"""Design-space search, pure parts: the space file, seeded sampling, designs, stage statistics, the
report's general pieces. No model, no training."""

from pathlib import Path

import pytest

from lamina.design import Design
from lamina.report import Document, markdown_table, pareto_front, plot_distributions, plot_score_vs_params
from lamina.search import COMPONENTS, Point, SearchSpace, SpaceError, default_space_file
from lamina.search.analysis import Row, decide, pick

DOCS_SPACE = Path(__file__).resolve().parents[1] / "docs" / "search" / "space.yaml"


def test_default_space_is_the_papers_and_matches_the_docs_example():
    space = SearchSpace.default()
    assert space.groups == 4 and space.budget == "0.5%" and space.stages == COMPONENTS
    assert set(space.grouping) == {"increasing", "uniform", "decreasing", "spindle", "bottleneck"}
    assert set(space.allocation) == {"increasing", "uniform", "decreasing"}
    assert len(space.tunable_choices()) == 15 and len(space.strategy_subsets()) == 15
    assert default_space_file().is_file() and SearchSpace() == space  # the file and the built-in defaults agree
    assert SearchSpace.from_file(DOCS_SPACE) == space


def test_sampling_is_seeded_reproducible_and_stratified():
    space = SearchSpace.default()
    a = space.sample(10, "grouping", {})
    assert a == space.sample(10, "grouping", {})  # same seed, same designs
    assert a != space.sample(10, "grouping", {}, seed=1)
    assert a != SearchSpace.from_dict({"seed": 7}).sample(10, "grouping", {})
    counts = {p: sum(x.grouping == p for x in a) for p in space.grouping}
    assert set(counts.values()) == {2}  # 10 trials over 5 patterns: every pattern twice
    fixed = {"grouping": "spindle", "allocation": "uniform"}
    b = space.sample(6, "tunable", fixed)
    assert all(p.grouping == "spindle" and p.allocation == "uniform" for p in b)
    assert all(p.trains_sized() for p in a + b)  # every design can meet a budget


def test_a_point_becomes_a_budget_design_with_solver_sized_strategies():
    space = SearchSpace.default()
    point = Point("spindle", "uniform", (1, 2, 3, 4),
                  (("adapter", "lora"), ("adapter", "prefix"), ("adapter", "prefix", "bitfit"), ("prefix", "bitfit", "lora")))
    design = space.design(point, 12)
    assert [(g.first, g.last) for g in design.groups] == [(0, 1), (2, 5), (6, 9), (10, 11)]
    assert design.budget.target == "0.5%" and design.budget.allocation == "uniform"
    sizes = [(s.method, getattr(s, "r", None), getattr(s, "length", None), getattr(s, "bottleneck", None))
             for g in design.groups for s in g.strategies]
    assert all(r is None and length is None and b is None for _, r, length, b in sizes)
    assert Design.from_dict(design.to_dict()) == design  # the file form keeps size=None
    untuned = space.design(Point("uniform", "uniform", (2,), (("lora",), ("lora",), (), ())), 12)
    assert [(g.first, g.last) for g in untuned.groups] == [(3, 5)]  # frozen groups are left out
    assert Point.from_dict(point.to_dict()) == point


@pytest.mark.parametrize("data, message", [
    ({"groups": 0}, "groups"),
    ({"budget": "lots"}, "neither a count nor a percentage"),
    ({"budget": -3}, "must be > 0"),
    ({"stages": ["grouping", "allocation"]}, "all four components"),
    ({"grouping": ["spiral"]}, "grouping"),
    ({"strategies": ["bitfit"]}, "sized strategy"),
    ({"strategies": {"lora": {"r": 4}}}, "sizes come from the budget"),
    ({"tunable": [[5]]}, "not a non-empty subset of groups 1..4"),
    ({"colour": "blue"}, "colour"),
])
def test_bad_spaces_name_the_field(data, message):
    with pytest.raises(SpaceError, match=message):
        SearchSpace.from_dict(data)


def test_bad_space_files(tmp_path):
    with pytest.raises(SpaceError, match="not found"):
        SearchSpace.from_file(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("groups: [4\n")
    with pytest.raises(SpaceError, match="not valid YAML"):
        SearchSpace.from_file(tmp_path / "broken.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(SpaceError, match="must be a mapping"):
        SearchSpace.from_file(tmp_path / "list.yaml")


def _rows(component, values_scores):
    base = Point("uniform", "uniform", (1, 2, 3, 4), (("lora",),) * 4)
    rows = []
    for i, (value, score) in enumerate(values_scores):
        point = Point(**{**base.__dict__, component: value})
        rows.append(Row(i, i, point, "COMPLETE" if score is not None else "FAIL", score))
    return rows


def test_choice_stage_compares_distributions_and_breaks_ties_by_median_then_order():
    space = SearchSpace.default()
    rows = _rows("grouping", [("spindle", 0.9), ("spindle", 0.5), ("uniform", 0.7), ("uniform", 0.69),
                              ("bottleneck", 0.95), ("bottleneck", 0.1), ("increasing", None)])
    value, table, _ = decide("grouping", rows, space, {})
    assert value == "spindle"  # mean 0.70 > uniform 0.695 > bottleneck 0.525, though bottleneck has the max
    by = {r["choice"]: r for r in table}
    assert by["spindle"]["mean"] == pytest.approx(0.7) and by["spindle"]["max"] == 0.9 and by["spindle"]["n"] == 2
    assert by["increasing"]["n"] == 0 and by["increasing"]["failed"] == 1
    assert by["decreasing"]["n"] == 0 and by["decreasing"]["trials"] == []  # listed, never sampled


def test_choice_winner_by_mean_then_median_then_space_order():
    space = SearchSpace.default()
    rows = _rows("allocation", [("decreasing", 0.8), ("decreasing", 0.6), ("increasing", 0.7), ("increasing", 0.7)])
    value, _, _ = decide("allocation", rows, space, {})
    assert value == "increasing"  # equal means (0.7); equal medians; higher minimum wins
    rows = _rows("allocation", [("decreasing", 0.7), ("increasing", 0.7)])
    assert decide("allocation", rows, space, {})[0] == "increasing"  # full tie: listed first in the space
    assert pick([{"n": 0, "mean": None, "median": None, "min": None, "order": 0}]) is None


def test_marginal_stages_keep_items_that_help_and_stay_feasible():
    space = SearchSpace.default()
    rows = _rows("tunable", [((1, 2), 0.9), ((2,), 0.5), ((1, 3), 0.8), ((3, 4), 0.4)])
    value, table, _ = decide("tunable", rows, space, {})
    assert value == (1, 2)  # G1 0.85 vs 0.45, G2 0.70 vs 0.60 kept; G3 0.60 vs 0.70, G4 0.40 vs 0.73 dropped
    by = {r["item"]: r for r in table}
    assert by["G1"]["with"]["n"] == 2 and by["G1"]["without"]["n"] == 2 and by["G1"]["winner"]
    assert by["G3"]["keep"] is False and by["G3"]["difference"] == pytest.approx(-0.1)
    fixed = {"grouping": "uniform", "allocation": "uniform", "tunable": (1, 2)}
    s_rows = _rows("strategies", [((("bitfit",), ("bitfit",), (), ()), 0.9), ((("lora",), ("lora",), (), ()), 0.5)])
    value, table, notes = decide("strategies", s_rows, space, fixed)
    # BitFit helped in both groups, LoRA did not; but BitFit alone cannot meet a budget, so the sized
    # strategy with the largest difference (LoRA in G1, first among equals) is added; untuned groups: nothing
    assert value == (("bitfit", "lora"), ("bitfit",), (), ())
    assert any("no sized strategy kept" in n for n in notes)
    assert {r["item"] for r in table} == {f"G{g}:{m}" for g in (1, 2) for m in "APBL"}


def test_pareto_front_and_tables_and_plots(tmp_path):
    xs, ys = [10, 20, 30, 15, 25], [0.5, 0.7, 0.65, 0.4, 0.8]
    assert pareto_front(xs, ys) == [0, 1, 4]
    md = markdown_table(["a", "b"], [["x|y", 1234], ["z", 0.5], ["w", None]])
    assert "x\\|y" in md and "1,234" in md and "0.5000" in md and "| w | - |" in md
    png1 = plot_distributions([("a", [0.1, 0.2]), ("b", []), ("c", [0.3])], tmp_path / "d.png", "t", highlight=["c"])
    png2 = plot_score_vs_params([{"label": "s", "x": xs, "y": ys}], tmp_path / "p.png")
    doc = Document("T")
    doc.heading("H")
    doc.text("some `code` and **bold**")
    doc.table(["a"], [[1]])
    doc.image(png1, "alt")
    md_path, html_path = doc.write(tmp_path)
    assert png1.stat().st_size > 1000 and png2.stat().st_size > 1000
    assert "![alt](d.png)" in md_path.read_text() and "<code>code</code>" in html_path.read_text()
