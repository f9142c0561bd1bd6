"""Tables and verdicts of bench/bench_cost.py: the issue-15 targets, the side-by-side ratios and the
Markdown report (kept apart from the measuring code so each file stays readable)."""

from __future__ import annotations

PHASES = ("forward", "backward", "optimizer")

TARGETS = {  # issue 15's goals
    "lora_vs_peft": 1.0,  # lamina LoRA step / PEFT LoRA step <= 1.0
    "spafit_vs_full": 0.65,  # SPAFIT step / full FT step <= 0.65
    "merged_latency_tol": 0.03,  # merged latency / base within 1 +- 0.03
    "unipelt_latency": 1.10,  # UniPELT unmerged latency / base <= 1.10
    "unipelt_vs_lora": 1.05,  # UniPELT step / lamina LoRA step <= 1.05
}


def ranges(indices: list[int]) -> str:
    """[4, 5, 6, 7, 9] -> '4-7, 9'."""
    out, start = [], None
    for k, i in enumerate(indices):
        if start is None:
            start = i
        if k + 1 == len(indices) or indices[k + 1] != i + 1:
            out.append(f"{start}-{i}" if i != start else f"{i}")
            start = None
    return ", ".join(out) or "none"



def mb(b: float) -> float:
    return b / 2**20



def evaluate_targets(results: dict) -> list[dict]:
    """Targets, judged on the wall-time median of the paired per-round ratios (the process-CPU-time ratio
    is reported beside it as a cross-check that is less sensitive to other load on the machine)."""
    train, out = results["train"], []
    tol = TARGETS["merged_latency_tol"]

    def add(label, row, key, ok):
        out.append({"target": label, "value": row[key], "pass": bool(ok(row[key])), "rounds": row[f"{key}_rounds"],
                    "cpu_value": row[f"cpu_{key}"], "cpu_pass": bool(ok(row[f"cpu_{key}"]))})

    if "ratio_peft" in train.get("lamina-lora", {}):
        add("lamina LoRA train step <= 1.00x PEFT LoRA", train["lamina-lora"], "ratio_peft", lambda v: v <= TARGETS["lora_vs_peft"])
    if "ratio_full" in train.get("lamina-spafit", {}):
        add(f"SPAFIT train step <= {TARGETS['spafit_vs_full']:.2f}x full fine-tuning", train["lamina-spafit"], "ratio_full",
            lambda v: v <= TARGETS["spafit_vs_full"])
    if "ratio_lora" in train.get("lamina-unipelt", {}):
        add(f"UniPELT train step <= {TARGETS['unipelt_vs_lora']:.2f}x lamina LoRA's", train["lamina-unipelt"], "ratio_lora",
            lambda v: v <= TARGETS["unipelt_vs_lora"])
    lat = results.get("latency", {}).get("configs", {})
    if "lamina-unipelt" in lat:
        add(f"UniPELT unmerged latency <= {TARGETS['unipelt_latency']:.2f}x base", lat["lamina-unipelt"], "ratio_base",
            lambda v: v <= TARGETS["unipelt_latency"])
    for name, label in (("lamina-lora-merged", "LoRA"), ("lamina-spafit-merged", "SPAFIT")):
        if name in lat:
            add(f"merged {label} latency = 1.00 +- {tol:.2f}x base", lat[name], "ratio_base", lambda v: abs(v - 1.0) <= tol)
    return out


# (label, section, configuration, key): the ratios issue 15 reads, each measured side by side in this run
RATIOS = (
    ("UniPELT unmerged latency / base", "latency", "lamina-unipelt", "ratio_base"),
    ("UniPELT + prompt unmerged latency / base", "latency", "lamina-unipelt-prompt", "ratio_base"),
    ("UniPELT train step / lamina LoRA step", "train", "lamina-unipelt", "ratio_lora"),
    ("UniPELT + prompt train step / lamina LoRA step", "train", "lamina-unipelt-prompt", "ratio_lora"),
    ("UniPELT train step / full FT step", "train", "lamina-unipelt", "ratio_full"),
    ("UniPELT train step / its parts ungated (what the gates cost)", "train", "lamina-unipelt", "ratio_parts"),
    ("UniPELT's parts ungated (adapter + prefix MLP + LoRA) step / lamina LoRA step", "train", "lamina-unipelt-parts", "ratio_lora"),
    ("LoRA + adapter (ungated) step / lamina LoRA step", "train", "lamina-lora-adapter", "ratio_lora"),
    ("LoRA + prefix MLP (ungated) step / lamina LoRA step", "train", "lamina-lora-prefix", "ratio_lora"),
    ("lamina LoRA step / PEFT LoRA step", "train", "lamina-lora", "ratio_peft"),
    ("SPAFIT step / full FT step", "train", "lamina-spafit", "ratio_full"),
    ("merged LoRA latency / base", "latency", "lamina-lora-merged", "ratio_base"),
    ("merged SPAFIT latency / base", "latency", "lamina-spafit-merged", "ratio_base"),
)


def side_by_side(results: dict) -> list[dict]:
    """The headline ratios (median over rounds of the paired per-round ratio; CPU-time ratio beside it)."""
    rows = []
    for label, section, name, key in RATIOS:
        table = results.get(section, {})
        row = (table.get("configs", table) if section == "latency" else table).get(name, {})
        if key in row:
            rows.append({"ratio": label, "value": row[key], "rounds": row[f"{key}_rounds"], "cpu_value": row[f"cpu_{key}"]})
    return rows


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if len(values) > 1 else "-"


def ratio_table(results: dict) -> list[str]:
    lines = ["### Ratios measured side by side in this run (median of per-round paired ratios)", "",
             "| ratio | wall | per-round range | CPU time |", "|---|---:|---:|---:|"]
    for r in results.get("ratios", []):
        lines.append(f"| {r['ratio']} | {r['value']:.3f} | {_spread(r['rounds'])} | {r['cpu_value']:.3f} |")
    ref = results.get("reference_adapters")
    if ref and "error" in ref:
        lines += ["", "AdapterHub `adapters` reference: failed (see the JSON's reference_adapters.error)."]
    elif ref:
        lines += ["", f"AdapterHub `adapters` {ref.get('adapters', '?')} UniPELT (separate process, same model config, batch and "
                  f"loop; not interleaved, so compare with care): train step {ref['step_s']:.3f} s, latency {ref['latency_s'] * 1e3:.1f} ms."]
        for key, label in (("unipelt_step_vs_adapters", "lamina UniPELT step / adapters UniPELT step"),
                           ("unipelt_latency_vs_adapters", "lamina UniPELT latency / adapters UniPELT latency")):
            if key in ref:
                lines.append(f"{label}: {ref[key]:.3f}.")
    return lines


def tables(results: dict) -> str:
    lines = ratio_table(results) + [""]
    train = results["train"]
    lines += ["### Train step (forward + backward + AdamW step)", "",
              "| configuration | design | trainable params | blocks in autograd graph | median step (s) | forward / backward / AdamW (s) | x full FT | rounds (min-max) | CPU-time x full FT | x PEFT LoRA (wall / CPU) |",
              "|---|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in train.items():
        peft = f"{r['ratio_peft']:.3f} / {r['cpu_ratio_peft']:.3f}" if "ratio_peft" in r else ""
        if "ratio_peft_pooler" in r:
            peft += f" (vs PEFT + pooler: {r['ratio_peft_pooler']:.3f} / {r['cpu_ratio_peft_pooler']:.3f})"
        ph = r.get("phases_median_s", {})
        phases = " / ".join(f"{ph[k]:.2f}" for k in PHASES) if ph else ""
        full = (f"{r['ratio_full']:.3f} | {_spread(r['ratio_full_rounds'])} | {r['cpu_ratio_full']:.3f}" if "ratio_full" in r else " | | ")
        blocks = ranges(r["layers_in_graph"]) if "layers_in_graph" in r else ""
        lines.append(f"| {name} | `{r['design']}` | {r['trainable']:,} | {blocks} | {r['median_s']:.3f} | {phases} | {full} | {peft} |")
    mem = results.get("memory")
    if mem:
        lines += ["", "### Peak memory during training", ""]
        rss = any("delta_rss_b" in r for r in mem.values())
        head = "| configuration |"
        head += " peak RSS (MB) | training delta (MB) | delta x full FT |" if rss else ""
        head += " saved activations (MB) | grads (MB) | AdamW state (MB) | accounted total (MB) | accounted x full FT |"
        lines += [head, "|---|" + "---:|" * (head.count("|") - 2)]
        for name, r in mem.items():
            a = r["accounted"]
            row = f"| {name} |"
            if rss:
                row += f" {mb(r['peak_rss_b']):.0f} | {mb(r['delta_rss_b']):.0f} | {r.get('delta_ratio_full', float('nan')):.3f} |"
            row += (f" {mb(a['activations_b']):.1f} | {mb(a['grads_b']):.1f} | {mb(a['optimizer_b']):.1f} | {mb(a['total_b']):.1f} |"
                    f" {r.get('accounted_ratio_full', float('nan')):.3f} |")
            lines.append(row)
    lat = results.get("latency")
    if lat:
        lines += ["", "### Inference latency (eval, no_grad, one batch)", "",
                  "| configuration | median (ms) | x base | rounds (min-max) | CPU-time x base |", "|---|---:|---:|---:|---:|"]
        for name, r in lat["configs"].items():
            lines.append(f"| {name} | {r['median_s'] * 1e3:.1f} | {r['ratio_base']:.3f} | {_spread(r['ratio_base_rounds'])} | {r['cpu_ratio_base']:.3f} |")
        c = lat["checks"]
        suffix = "_merged_vs_unmerged_max_abs_logit_diff"
        for short in [k.removesuffix(suffix) for k in c if k.endswith(suffix)]:
            lines += ["", f"Merge check ({short}): max |logits(merged) - logits(unmerged)| = {c[short + suffix]:.2e}; "
                      f"the perturbed adapter moves the logits by {c[f'{short}_vs_base_max_abs_logit_diff']:.2e} from the base model's."]
        if c.get("not_merged"):
            lines += ["", "Left as hooks by the merge (not mergeable): " + "; ".join(c["not_merged"]) + "."]
    lines += ["", "### Targets (verdict on the wall-time median; CPU-time ratio as a cross-check)", "",
              "| target | wall ratio (median) | per-round range | verdict | CPU-time ratio | verdict on CPU time |", "|---|---:|---:|---|---:|---|"]
    for t in results["targets"]:
        lines.append(f"| {t['target']} | {t['value']:.3f} | {_spread(t['rounds'])} | {'PASS' if t['pass'] else 'FAIL'} | "
                     f"{t['cpu_value']:.3f} | {'PASS' if t['cpu_pass'] else 'FAIL'} |")
    return "\n".join(lines)


def markdown(results: dict) -> str:
    m = results["meta"]
    head = [
        f"# Cost benchmark: {m['model']}",
        "",
        f"Command: `{m['command']}`",
        "",
        f"{m['date']} | torch {m['torch']} | transformers {m['transformers']} | peft {m['peft']} | {m['threads']} threads | "
        f"{m['cpu']} ({m['cpu_count']} logical CPUs) | {m['layers']} layers, {m['base_params']:,} params | batch {m['batch']} x {m['length']} tokens | "
        f"attention `{m['attn_implementation']}` | load average (1/5/15 min) {m['loadavg_start']} at start, {m['loadavg_end']} at end | "
        f"{m['elapsed_s']:.0f} s in all" + (f" (CPU time used: {m['cpu_s']['benchmark']:.0f} s timing + {m['cpu_s']['memory_workers']:.0f} s memory workers)" if "cpu_s" in m else ""),
        "",
        f"Timing: {m['warmup']} warm-up step(s), then {m['rounds']} interleaved round(s) of {m['steps']} step(s) per configuration; "
        f"latency: {m['latency_rounds']} round(s) of {m['latency_iters']} forward(s). Memory: {m['memory_method']}.",
        "",
        "",
    ]
    return "\n".join(head) + tables(results) + "\n\n" + METHOD_NOTE + "\n"


METHOD_NOTE = """### Method
- Every configuration trains its own deep copy of one base model (identical starting weights), train mode
  (dropout on), AdamW over its trainable parameters only; a step is forward with labels + backward + AdamW
  step + zero_grad(set_to_none).
- Rounds are interleaved (each configuration runs its steps in turn, the order rotating per round) because
  the machine is shared and noisy; ratios are the median over rounds of the per-round ratio, so a slow spell
  hits the configurations compared in one round alike. Absolute seconds mean little; compare ratios.
  Beside wall time we record the process's CPU time (all threads): other load on the machine stretches
  wall time far more than CPU time, so the CPU-time ratio is a cross-check (it still counts threads
  spin-waiting for a descheduled sibling, so it is not immune to contention either).
- Peak memory (rss): one fresh subprocess per configuration; peak-RSS mark reset via /proc/self/clear_refs
  after building the model, design and optimizer, then two train steps; *training delta* = VmHWM - RSS at
  reset (activations + gradients + AdamW state + allocator slack; the model's own weights are in the
  baseline). *Accounted*: unique storages saved for backward in step 2 (parameters excluded) + gradient
  bytes + AdamW state bytes — allocator-independent, and it does not see transient workspace.
- Latency: eval mode, torch.no_grad(), same batch, interleaved rounds; adapter weights are perturbed (seeded)
  so merging is a real weight change; UniPELT cannot merge (gates depend on the input) and runs unmerged."""

