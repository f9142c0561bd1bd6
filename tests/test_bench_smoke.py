"""Smoke test of bench/bench_cost.py on a tiny random BERT (no downloads), so the cost benchmark cannot
rot. Checks the shape of its JSON and Markdown; no timing assertions (the machine is shared and noisy)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))


def test_bench_cost_tiny(tmp_path, capsys):
    import bench_cost

    out_json, out_md = tmp_path / "cost.json", tmp_path / "cost.md"
    argv = ["--model", "tiny", "--steps", "2", "--warmup", "1", "--rounds", "1", "--batch", "4", "--length", "32",
            "--latency-iters", "1", "--memory", "accounted", "--threads", "1", "--json", str(out_json), "--markdown", str(out_md)]
    bench_cost.main(argv)
    results = json.loads(out_json.read_text())

    assert set(results["train"]) == set(bench_cost.CORE)
    for name, row in results["train"].items():
        assert row["median_s"] > 0 and row["ratio_full"] > 0, name
        assert row["trainable"] > 0, name
        assert len(row["all_s"]) == 2, name  # --steps 2 x --rounds 1
    assert results["train"]["lamina-lora"]["ratio_peft"] > 0
    assert results["train"]["full"]["ratio_full"] == 1.0

    assert set(results["memory"]) == set(bench_cost.CORE)
    for name, row in results["memory"].items():
        assert row["accounted"]["total_b"] > 0 and row["accounted_ratio_full"] > 0, name
    # frozen design parts keep no optimizer state: full FT holds far more than LoRA
    assert results["memory"]["full"]["accounted"]["optimizer_b"] > results["memory"]["lamina-lora"]["accounted"]["optimizer_b"]

    latency = results["latency"]["configs"]
    assert set(latency) == set(bench_cost.LATENCY)
    for name, row in latency.items():
        assert row["median_s"] > 0 and row["ratio_base"] > 0, name
    # merging is exact up to float error (this is a correctness check, not a timing one)
    assert results["latency"]["checks"]["lora_merged_vs_unmerged_max_abs_logit_diff"] < 1e-4

    assert {t["target"] for t in results["targets"]} and all(isinstance(t["pass"], bool) for t in results["targets"])
    # issue 15's ratios, measured side by side in this one run
    ratios = {r["ratio"]: r["value"] for r in results["ratios"]}
    assert set(ratios) == {label for label, *_ in bench_cost.RATIOS} and all(v > 0 for v in ratios.values())
    assert results["train"]["lamina-unipelt"]["ratio_lora"] == ratios["UniPELT train step / lamina LoRA step"]
    meta = results["meta"]
    assert meta["command"].startswith("bench/bench_cost.py --model tiny") and meta["torch"] and meta["threads"] >= 1
    text = out_md.read_text()
    assert "PASS" in text or "FAIL" in text
    assert "| lamina-spafit |" in text and "| UniPELT unmerged latency / base |" in text
    assert "Targets" in capsys.readouterr().out


def test_bench_cost_all_presets_times_and_merges_every_preset(tmp_path, monkeypatch):
    """--all-presets: every preset trains and runs inference unmerged; the mergeable ones also merged, with
    logits equal to unmerged, and what cannot merge (S4's adapters and prefix) named as left as hooks."""
    import bench_cost

    # S4's default 0.5 % budget is below its smallest design on a 235K-parameter model
    monkeypatch.setitem(bench_cost.ALL, "lamina-s4", ("lamina", "s4:budget=3%"))
    argv = ["--model", "tiny", "--steps", "1", "--warmup", "1", "--rounds", "1", "--batch", "2", "--length", "16",
            "--latency-iters", "1", "--memory", "off", "--threads", "1", "--all-presets",
            "--json", str(tmp_path / "all.json")]
    results = bench_cost.main(argv)
    assert set(results["train"]) == set(bench_cost.CORE) | set(bench_cost.EXTRA)
    latency = results["latency"]["configs"]
    assert set(latency) == set(bench_cost.LATENCY) | set(bench_cost.LATENCY_EXTRA)
    assert all(f"{name}-unmerged" in latency for name in bench_cost.EXTRA)
    checks = results["latency"]["checks"]
    for short in ("lora", "spafit", "bitfit", "ln", "s4"):
        assert checks[f"{short}_merged_vs_unmerged_max_abs_logit_diff"] < 1e-4, short
        assert checks[f"{short}_vs_base_max_abs_logit_diff"] > 1e-3, short  # the merge had something to fold
    left = checks["not_merged"]
    assert left and all(item.startswith("s4: ") for item in left)


def test_unipelt_parts_are_unipelt_without_its_gates():
    """The ungated reference rows train exactly UniPELT's tensors minus the gates (so their step-time ratio
    is the gates' cost), and the single-part rows exactly that part's tensors beside LoRA's."""
    import copy

    import bench_cost

    base = bench_cost.build_base("tiny", 0)
    depth = bench_cost.num_layers(base)

    def trained(name):
        model, _ = bench_cost.configure(name, copy.deepcopy(base), depth)
        return {k: tuple(p.shape) for k, p in model.named_parameters() if p.requires_grad}

    unipelt, parts = trained("lamina-unipelt"), trained("lamina-unipelt-parts")
    gates = {k: v for k, v in unipelt.items() if ".gate" in k or ".gates." in k}
    assert gates and {k: v for k, v in unipelt.items() if k not in gates} == parts
    lora, with_adapter, with_prefix = trained("lamina-lora"), trained("lamina-lora-adapter"), trained("lamina-lora-prefix")
    head = {k: v for k, v in lora.items() if "lamina_adapters" not in k}
    assert set(with_adapter) | set(with_prefix) == set(parts) and set(with_adapter) & set(with_prefix) == set(parts) - {
        k for k in parts if ".adapter." in k or ".prefix." in k}
    assert all(k in with_adapter and k in with_prefix for k in head)
    assert any(".adapter." in k for k in with_adapter) and not any(".prefix." in k for k in with_adapter)
    assert any(".prefix." in k for k in with_prefix) and not any(".adapter." in k for k in with_prefix)


def test_spafit_builds_no_graph_below_n1():
    """SPAFIT's frozen lower blocks must stay out of the autograd graph (no backward runs there)."""
    import copy

    import bench_cost

    base = bench_cost.build_base("tiny", 0)
    batch = bench_cost.make_batch(base, 2, 8, 1)
    depth = bench_cost.num_layers(base)
    seen = {}
    for name in ("full", "lamina-spafit", "lamina-lora"):
        model, params = bench_cost.configure(name, copy.deepcopy(base), depth)
        optimizer = bench_cost.make_optimizer(params)
        seen[name] = bench_cost.graph_layers(model, lambda: bench_cost.train_step(model, optimizer, batch))
    assert seen["full"] == seen["lamina-lora"] == list(range(depth))
    assert seen["lamina-spafit"] == list(range(depth // 3, depth))  # spafit n1 = L/3


def test_bench_cost_quick_without_peft(tmp_path, monkeypatch):
    """--quick sets a small check run (explicit flags still win); without peft its rows are left out."""
    import bench_cost

    monkeypatch.setattr(bench_cost, "have_peft", lambda: False)
    args = bench_cost.parse_args(["--model", "tiny", "--quick", "--length", "16"])
    assert (args.batch, args.length, args.rounds, args.steps, args.memory) == (4, 16, 1, 1, "off")
    results = bench_cost.main(["--model", "tiny", "--quick", "--threads", "1", "--only", "full,lamina-lora,peft-lora,lamina-unipelt",
                               "--markdown", str(tmp_path / "q.md")])
    assert set(results["train"]) == {"full", "lamina-lora", "lamina-unipelt"} and results["meta"]["peft"] is None
    assert "ratio_lora" in results["train"]["lamina-unipelt"] and "| UniPELT train step / lamina LoRA step |" in (tmp_path / "q.md").read_text()
