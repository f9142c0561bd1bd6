"""The probe: every candidate method in every layer at once, gradients on a few mini-batches of the
user's training data, and per (layer, method) cell the statistics the allocation reads.

The probe design is an ordinary design (one group per layer, all candidates, ungated) built by
`lamina.apply`, so a cell's tensors and its exact cost are the ones a real design would have. Each
sized method is probed at the size a uniform design of that method alone would get at the budget,
so a cell's value per parameter is measured at about the size it would be trained with.

The model is not updated: every batch gives a gradient at the starting point. Zero-initialised parts
(LoRA's B, the adapter's up projection, BitFit and LayerNorm deltas) all get non-zero gradients
there, and since every other cell is also at its starting point, each cell's gradient is its own
marginal effect (first order), not a share of what the others already learned.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from lamina.arch import map_model
from lamina.design import Design, DesignError
from lamina.suggest.candidates import is_sized, size_of, strategy

PROBE_NAME = "lamina-probe"
SIGNALS = ("fisher", "grad2", "adam", "taylor")


@dataclass
class ProbeResult:
    """What a probe measured. Keys of `cost` / `stats` are (layer, method)."""

    layers: list[int]
    stacks: list[str]  # stack of each layer (encoder / decoder)
    methods: tuple[str, ...]
    sizes: dict[str, int]  # probe size of each sized method
    cost: dict[tuple[int, str], int]  # exact trainable parameters of the cell at the probe size
    stats: dict[tuple[int, str], dict[str, float]]  # SIGNALS per cell (sums over the cell's parameters)
    change: dict[int, float]  # 1 - cos(mean-token state in, out) of each layer
    steps: int = 0
    examples: int = 0
    mean_loss: float = 0.0
    notes: list[str] = field(default_factory=list)


def available_methods(model: nn.Module, methods: tuple[str, ...]) -> tuple[tuple[str, ...], list[str]]:
    """Drop methods this model cannot host (e.g. prefix on DeBERTa-v2), with a note saying why: each is
    tried on layer 0 on the meta device. None left is an error."""
    import lamina

    kept, notes = [], []
    for method in methods:
        trial = Design.from_dict({"groups": [{"layers": 0, "strategies": [strategy(method, 1)]}], "train_head": False})
        try:
            lamina.apply(model, trial, dry_run=True)
            kept.append(method)
        except DesignError as err:
            notes.append(f"{method} left out: {err}")
    if not kept:
        raise DesignError(f"methods: none of {', '.join(methods)} works on this model ({'; '.join(notes)})")
    return tuple(kept), notes


def probe_sizes(model: nn.Module, methods, target) -> dict[str, int]:
    """Each sized method's size in a uniform design of that method alone at `target` (at least 1), one
    less where the solver rounded up past the target, so that one such cell per layer fits the budget."""
    import lamina

    last = map_model(model).num_layers - 1
    sizes = {}
    for method in methods:
        if not is_sized(method):
            continue
        uniform = Design.from_dict({"groups": [{"layers": [0, last], "strategies": [strategy(method)]}],
                                    "budget": {"target": target}})
        try:
            report = lamina.apply(model, uniform, dry_run=True)
            size = int(size_of(report.design.to_dict()["groups"][0]["strategies"][0]))
            over = report.budget["achieved"] > report.budget["target"]
            sizes[method] = max(1, size - 1 if over else size)
        except DesignError:  # the budget is below size 1 in every layer: probe at size 1
            sizes[method] = 1
    return sizes


def probe_design(num_layers: int, methods, sizes: dict[str, int]) -> Design:
    """One group per layer, every candidate in it, ungated, the task head trainable."""
    groups = [{"layers": i, "strategies": [strategy(m, sizes.get(m)) for m in methods]} for i in range(num_layers)]
    return Design.from_dict({"name": "suggest-probe", "groups": groups, "train_head": True})


def run_probe(model: nn.Module, batches, methods, target, *, seed: int = 0, target_count: int | None = None) -> ProbeResult:
    """Attach the probe design to `model` (a fresh copy: the probe is removed again afterwards), run
    forward + backward on each batch of `batches` (dicts of tensors with labels; `model(**batch).loss`),
    and return per-cell gradient statistics and per-layer representation change."""
    import lamina
    from lamina.inject import adapters_of, delete_adapter

    methods, notes = available_methods(model, tuple(methods))
    mmap = map_model(model)
    sizes = probe_sizes(model, methods, target)
    design = probe_design(mmap.num_layers, methods, sizes)
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    was_training = model.training
    torch.manual_seed(seed)
    report = lamina.apply(model, design, name=PROBE_NAME)
    try:
        adapters = adapters_of(model)[PROBE_NAME]
        cost = {(int(r.group), r.method): r.trainable for r in report.rows if r.method in methods}
        cheapest = min(cost, key=cost.get)
        if target_count is not None and cost[cheapest] > target_count:  # before any batch runs
            raise DesignError(f"budget: {target_count:,} parameters is too small for any cell (the cheapest, "
                              f"{cheapest[1]} in one layer, costs {cost[cheapest]:,})")
        params = {(g, m): list(adapters.groups[str(g)][m].parameters()) for g in range(mmap.num_layers) for m in methods}
        stats, change, steps, examples, loss = _accumulate(model, batches, params, mmap)
    finally:
        delete_adapter(model, PROBE_NAME)
        for name, p in model.named_parameters():
            p.requires_grad_(flags.get(name, False))
        model.train(was_training)
    if steps == 0:
        raise DesignError("the probe got no batches: the training data is empty")
    layers = [layer.index for layer in mmap.layers]
    return ProbeResult(layers, [layer.stack for layer in mmap.layers], tuple(methods), sizes, cost, stats, change,
                       steps, examples, loss, notes)


def _accumulate(model, batches, params, mmap):
    """Sum g and g^2 per parameter over the batches (float64), plus |sum g·theta| and the
    representation change per layer, all at the starting point (eval mode: no dropout noise)."""
    model.eval()
    device = next(model.parameters()).device
    tensors = [p for plist in params.values() for p in plist]
    s1 = {id(p): torch.zeros(p.shape, dtype=torch.float64, device=device) for p in tensors}
    s2 = {id(p): torch.zeros(p.shape, dtype=torch.float64, device=device) for p in tensors}
    change_sum = {layer.index: 0.0 for layer in mmap.layers}
    change_n = {layer.index: 0 for layer in mmap.layers}
    handles = [_change_hook(layer, change_sum, change_n, model) for layer in mmap.layers]
    steps = examples = 0
    loss_sum = 0.0
    try:
        for batch in batches:
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            out = model(**batch)
            if getattr(out, "loss", None) is None:
                raise DesignError("the probe needs labelled batches: the model returned no loss")
            model.zero_grad(set_to_none=True)
            out.loss.backward()
            for p in tensors:
                if p.grad is not None:
                    g = p.grad.detach().to(torch.float64)
                    s1[id(p)] += g
                    s2[id(p)] += g * g
            model.zero_grad(set_to_none=True)
            steps += 1
            examples += int(next(v for v in batch.values() if isinstance(v, torch.Tensor)).shape[0])
            loss_sum += float(out.loss.detach())
    finally:
        for handle in handles:
            handle.remove()
    stats = {cell: _signals(plist, s1, s2, steps) for cell, plist in params.items()}
    change = {i: change_sum[i] / change_n[i] if change_n[i] else 0.0 for i in change_sum}
    return stats, change, steps, examples, loss_sum / max(steps, 1)


def _signals(plist, s1, s2, steps: int) -> dict[str, float]:
    """Per cell, summed over its parameters (mu = mean gradient, m2 = mean squared gradient):
    fisher = sum m2 (empirical Fisher trace; SGD's step size squared, noise included);
    grad2 = sum mu^2, debiased by var/(T-1) (SGD's expected loss decrease per unit step, noise removed);
    adam = sum debiased mu^2 / sqrt(m2) (Adam's expected loss decrease per unit learning rate: each
    coordinate moves about lr, in the direction of its mean gradient, damped by its noise);
    taylor = |sum mu·theta| (first-order effect of removing the cell; zero where a part starts at zero)."""
    if steps == 0:
        return dict.fromkeys(SIGNALS, 0.0)
    fisher = grad2 = adam = taylor = 0.0
    for p in plist:
        mu, m2 = s1[id(p)] / steps, s2[id(p)] / steps
        signal = mu * mu
        if steps > 1:
            signal = signal - (m2 - mu * mu).clamp_min(0) / (steps - 1)
        fisher += float(m2.sum())
        grad2 += float(signal.sum())
        adam += float((signal / m2.clamp_min(1e-30).sqrt()).sum())
        taylor += float((mu * p.detach().to(torch.float64)).sum())
    return {"adam": max(adam, 0.0), "grad2": max(grad2, 0.0), "fisher": fisher, "taylor": abs(taylor)}


def _change_hook(layer, sums: dict, counts: dict, model):
    """1 - cos(mean-token input state, mean-token output state) of one block, per example."""
    from lamina.inject import runtime_of
    from lamina.methods.base import first_tensor

    runtime = runtime_of(model)

    def hook(_block, args, kwargs, output):
        x = first_tensor(args, kwargs)
        y = output[0] if isinstance(output, (tuple, list)) else output
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor) or x.shape != y.shape or x.dim() != 3:
            return None
        with torch.no_grad():
            mask = runtime.mask
            if mask is not None and tuple(mask.shape) == tuple(x.shape[:2]):
                w = mask.to(x.dtype).unsqueeze(-1)
                mx, my = (x * w).sum(1) / w.sum(1).clamp_min(1), (y * w).sum(1) / w.sum(1).clamp_min(1)
            else:
                mx, my = x.mean(1), y.mean(1)
            cos = nn.functional.cosine_similarity(mx.float(), my.float(), dim=-1)
            sums[layer.index] += float((1 - cos).sum())
            counts[layer.index] += int(cos.numel())
        return None

    return layer.block.register_forward_hook(hook, with_kwargs=True)


def depth_prior(layers: list[int]) -> dict[int, float]:
    """SPAFIT's stratification as a weight: deeper layers are more task-specific (its LoRA goes on top,
    BitFit in the middle, the bottom stays frozen): weight (i + 1) / L, so the top layer has 1."""
    n = len(layers)
    return {layer: (i + 1) / n for i, layer in enumerate(layers)}
