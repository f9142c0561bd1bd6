"""Smoke test of the budget benchmark (bench/bench_budget.py) on a tiny random BERT: the LR sweep on
held-out training rows, one main row x one task x one seed with its learning curve, the skipped rows,
resuming, and --report-only (tables, paired-comparison code, plots)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from test_bench_quality_smoke import tiny_setup  # noqa: E402,F401  (the fixture: tiny BERT + SST-2-like data)


def _args(root, model_dir, glue, *extra):
    return ["--model", str(model_dir), "--data-dir", str(glue), "--tasks", "sst2", "--presets", "lora", "spafit", "search",
            "--seeds", "0", "--budget", "5%", "--train-rows", "sst2=16", "--epochs", "sst2=2", "--max-lengths", "sst2=16", "--evals", "2",
            "--batch-size", "8", "--families", "lora", "--lr-grid", "lora=1e-3+3e-3", "--sweep-tasks", "sst2",
            "--sweep-train", "16", "--sweep-heldout", "8", "--sweep-epochs", "1", "--spafit-candidates", "0-2+1-3", "--jobs", "0",
            "--work-dir", str(root / "work-b"), "--json", str(root / "budget.json"),
            "--markdown", str(root / "budget.md"), *extra]


def test_budget_smoke(tiny_setup):  # noqa: F811
    import bench_budget

    root, model_dir, glue = tiny_setup
    data = bench_budget.main(_args(root, model_dir, glue))
    sweep = [r for r in data["rows"] if r["phase"] == "sweep"]
    main = [r for r in data["rows"] if r["phase"] == "main"]
    assert sorted(r["label"] for r in sweep) == ["sweep:lora:lr=0.001", "sweep:lora:lr=0.003",
                                                 "sweep:spafit:0-2", "sweep:spafit:1-3"]
    assert all(r["eval_examples"] == 8 and r["train_examples"] == 16 for r in sweep)  # held-out training rows
    spafit = [r for r in main if r["label"] == "spafit"]
    assert len(spafit) == 1 and data["meta"]["decided"]["spafit"] in spafit[0]["design"]
    (row,) = [r for r in main if r["label"] == "lora"]
    assert row["label"] == "lora" and row["design"] == "lora:budget=5%" and row["train_examples"] == 16
    assert row["eval_examples"] == 12  # the full dev set
    assert row["lr"] == data["meta"]["decided"]["lr"]["lora"]
    # the curve: evaluations at evenly spaced steps; the reported score is the last (final model)
    assert len(row["curve"]) == 2 and row["curve"][-1]["step"] == row["global_step"] == row["planned_steps"] == 4
    assert row["main_score"] == row["curve"][-1]["score"] and row["trainable_no_head"] > 0
    assert any("skipped row 'search'" in s for s in data["meta"]["skipped"])
    md = (root / "budget.md").read_text()
    assert "| lora |" in md and "Learning-rate sweep" in md and "**yes**" in md
    # resumable: nothing runs again
    again = bench_budget.main(_args(root, model_dir, glue))
    assert len(again["rows"]) == len(data["rows"])
    # report-only: tables and plots from the JSON alone
    bench_budget.main(["--report-only", "--json", str(root / "budget.json"), "--markdown", str(root / "r.md"),
                       "--plots", str(root / "png")])
    assert (root / "png" / "budget_vs_params.png").stat().st_size > 1000
    assert (root / "png" / "budget_curves.png").stat().st_size > 1000
    assert json.loads((root / "budget.json").read_text())["rows"] == data["rows"]


def test_paired_comparison():
    """The suggest-vs-best-uniform analysis on hand-made rows (not results: a unit test of the code path)."""
    import budget_report as br

    rows = []
    for seed, (a, b, c) in enumerate([(0.80, 0.78, 0.70), (0.82, 0.79, 0.71), (0.81, 0.80, 0.72)]):
        for t in ("sst2", "rte"):
            rows += [dict(phase="main", task=t, label="suggest", seed=seed, main_score=a),
                     dict(phase="main", task=t, label="lora", seed=seed, main_score=b),
                     dict(phase="main", task=t, label="prefix", seed=seed, main_score=c)]
    data = {"meta": {"protocol": {"tasks": ["sst2", "rte"], "presets": {"suggest": [], "lora": [], "prefix": []}}}, "rows": rows}
    res = br.paired(data, "suggest", ("lora", "prefix"))
    assert res["best_uniform"] == "lora" and res["seeds"] == [0, 1, 2]
    assert abs(res["mean_diff"] - 2.0) < 1e-9 and 0 < res["p_seeds"] < 0.2 and res["n_pairs"] == 6
    assert br.paired(data, "search", ("lora",)) is None


def test_layer_map_summary_and_plot(tmp_path):
    """The suggested designs' one-line summaries and the layers x methods share plot, from result rows."""
    import budget_report as br

    top = {"first": 4, "last": 5, "strategies": [{"method": "lora", "r": 13}, {"method": "adapter", "bottleneck": 24},
                                                 {"method": "bitfit"}]}
    low = {"first": 0, "last": 3, "strategies": [{"method": "bitfit"}, {"method": "ln"}]}
    design = {"groups": [low, top]}
    assert br.design_summary(design) == "L0-3 B+N · L4-5 L(13)+A(24)+B"
    assert br.design_summary({"groups": [{"first": 2, "last": 2, "strategies": []}]}) == "L2 frozen"
    cells = br.design_cells(design)
    assert cells[0] == ["bitfit", "ln"] and cells[5] == ["lora", "adapter", "bitfit"] and 6 not in cells
    other = {"groups": [{**low, "last": 4}, {**top, "first": 5}]}
    rows = [{"phase": "main", "label": "suggest", "task": "sst2", "seed": s, "design_resolved": d}
            for s, d in ((0, design), (1, other))]
    data = {"meta": {"protocol": {"tasks": ["sst2", "stsb"]}}, "rows": rows}
    section = "\n".join(br.layer_map_section(data))
    assert "| SST-2 | 0 | L0-3 B+N · L4-5 L(13)+A(24)+B |" in section and "| SST-2 | 1 | L0-4 B+N · L5" in section
    assert br.layer_map_plot(data, tmp_path / "maps.png").stat().st_size > 0
    assert br.layer_map_plot({"meta": data["meta"], "rows": []}, tmp_path / "none.png") is None
