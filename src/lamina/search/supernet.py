"""The one-shot supernet: every candidate method in every layer, each (layer, method) cell behind a learned
scalar architecture gate g = σ(α), trained once with a penalty that drives the expected trainable-parameter
count to the budget.

**The gate goes through the method unit.** Each method declares, in `Method.scaled_tensors`, the tensors
through which its contribution can be scaled and their neutral values; the supernet re-parameterises each
of them (`torch.nn.utils.parametrize`) as neutral + g·(t − neutral). So g = 0 switches the cell off, g = 1
leaves it as trained, and a contribution linear in those tensors (LoRA's B, an adapter's up projection,
bias and norm deltas, IA³'s vectors about one) is scaled by exactly g. Nothing here knows any method.

**The penalty.** E = Σ_c σ(α_c)·cost_c is the expected trainable count of the pruned design if each cell
were kept with probability σ(α_c); cost_c is the cell's exact parameter count from lamina's dry-run
counting (the same numbers the budget solver uses). The loss is task loss + λ·(E/B − 1)², B the budget
without the head: two-sided, so the gates are pulled to spend the budget, not merely to stay under it,
and its gradient on α_c is proportional to cost_c, so an expensive cell must earn more to stay open.
With Adam on α, the penalty sets the total while E is far from B; near B its gradient vanishes and the
task loss ranks the cells (cf. S3Delta's budget-shifted L0 penalty, Hu et al. NeurIPS 2022; BIPEFT,
EMNLP 2024, for a budget-guided search of module and size).

**Training.** Single-level (DARTS's first-order shortcut without a validation split): one backward pass
per step updates the cells' tensors (AdamW, the search's learning rate, 6 % warmup then linear decay) and
the gates (Adam with DARTS's betas (0.5, 0.999), `alpha_lr`, constant; default 4 / steps) on the
same training batch, so the supernet costs about one
training of a design with every cell in it. α starts at 0 (every gate at 0.5, as in DARTS). The dev set
is read once, at the end, for the supernet's own score (recorded, never used to choose).
"""

from __future__ import annotations

import math
import random

import torch
from torch import nn
from torch.nn.utils import parametrize

from lamina.methods import METHODS

ADAPTER = "lamina-supernet"


class ArchGates(nn.Module):
    """α per (layer, method) cell, in `cells` order; g = σ(α)."""

    def __init__(self, cells: list[tuple[int, str]], costs: dict, target: int):
        super().__init__()
        self.cells = list(cells)
        self.alpha = nn.Parameter(torch.zeros(len(self.cells)))
        self.register_buffer("cost", torch.tensor([float(costs[c]) for c in self.cells]), persistent=False)
        self.target = float(target)

    def gate(self, i: int) -> torch.Tensor:
        return torch.sigmoid(self.alpha[i])

    def expected(self) -> torch.Tensor:
        """Expected trainable parameters: Σ σ(α)·cost."""
        return (torch.sigmoid(self.alpha) * self.cost).sum()

    def penalty(self, weight: float) -> torch.Tensor:
        return weight * (self.expected() / self.target - 1.0) ** 2

    def values(self) -> dict[tuple[int, str], float]:
        return {c: float(v) for c, v in zip(self.cells, torch.sigmoid(self.alpha.detach()))}


class _Scaled(nn.Module):
    """The parametrization t -> neutral + g·(t − neutral) of one cell's tensor."""

    def __init__(self, gates: ArchGates, index: int, neutral):
        super().__init__()
        self.__dict__["gates"] = gates  # not a submodule: α belongs to the gates, not to the adapter
        self.index = index
        if isinstance(neutral, torch.Tensor):
            self.register_buffer("neutral", neutral.detach().clone(), persistent=False)
        else:
            self.neutral = float(neutral)

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        g = self.gates.gate(self.index).to(tensor.dtype)
        neutral = self.neutral
        if isinstance(neutral, torch.Tensor):
            neutral = neutral.to(tensor.dtype)
        return neutral + g * (tensor - neutral)


def attach_gates(model: nn.Module, design, gates: ArchGates, name: str = ADAPTER) -> int:
    """Gate every cell of the supernet adapter `name` (one group per layer) through its method's declared
    tensors; returns how many tensors were re-parameterised. A cell whose method declares none is refused."""
    from lamina.errors import LaminaError
    from lamina.inject import adapters_of

    adapters = adapters_of(model)[name]
    index = {cell: i for i, cell in enumerate(gates.cells)}
    done = 0
    for g, group in enumerate(design.groups):
        for strategy in group.strategies:
            module = adapters.groups[str(g)][strategy.method]
            scaled = METHODS[strategy.method].scaled_tensors(module, strategy)
            if not scaled:
                raise LaminaError(f"{METHODS[strategy.method].label}: declares no tensor that scales its contribution "
                                  "(Method.scaled_tensors), so the one-shot search cannot gate it")
            for path, neutral in scaled.items():
                owner_path, _, attr = path.rpartition(".")
                owner = module.get_submodule(owner_path) if owner_path else module
                parametrize.register_parametrization(owner, attr, _Scaled(gates, index[(group.first, strategy.method)], neutral),
                                                     unsafe=True)
                done += 1
    return done


def train(model, design, costs: dict, target: int, inputs: list[dict], collate, evaluation, *, epochs: float,
          batch_size: int, lr: float, alpha_lr: float | None, penalty: float, seed: int, progress: dict | None = None,
          on_step=None) -> dict:
    """Attach `design` (the supernet) to `model`, gate it, train it on `inputs` (model inputs, batched by
    `collate`), score it once on `evaluation` (a `lamina.tasks.kind.EvalSet`, through its task kind);
    returns the gates, the trajectory of the expected count and the score."""
    import lamina
    from transformers import get_linear_schedule_with_warmup

    progress = progress if progress is not None else {}
    torch.manual_seed(seed)
    lamina.apply(model, design, name=ADAPTER)
    cells = [(g.first, s.method) for g in design.groups for s in g.strategies]
    gates = ArchGates(cells, costs, target)
    attach_gates(model, design, gates)
    weights = [p for p in model.parameters() if p.requires_grad]
    batches_per_epoch = math.ceil(len(inputs) / batch_size)
    total = max(1, math.ceil(epochs * batches_per_epoch))
    optimizer = torch.optim.AdamW(weights, lr=lr, weight_decay=0.0)
    schedule = get_linear_schedule_with_warmup(optimizer, math.ceil(0.06 * total), total)
    alpha_lr = alpha_lr or 4.0 / total  # α can travel about ±4 (σ 0.02..0.98) in the training
    arch_optimizer = torch.optim.Adam(gates.parameters(), lr=alpha_lr, betas=(0.5, 0.999))  # DARTS's α betas
    rng = random.Random(seed)
    start = float(gates.expected().detach()) / gates.target
    trajectory, losses, order = [round(start, 5)], [], []
    examples = 0
    progress["planned"] = total
    model.train()
    for step in range(1, total + 1):
        if not order:
            order = list(range(len(inputs)))
            rng.shuffle(order)
        picked, order = order[:batch_size], order[batch_size:]
        batch = collate([inputs[i] for i in picked])
        out = model(**batch)
        loss = out.loss + gates.penalty(penalty)
        optimizer.zero_grad(set_to_none=True)
        arch_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        arch_optimizer.step()
        examples += len(picked)
        trajectory.append(round(float(gates.expected().detach()) / gates.target, 5))
        losses.append(round(float(out.loss.detach()), 5))
        progress.update(steps=step, examples=examples)
        if on_step is not None:
            on_step(step)
    model.eval()
    metrics = evaluation.spec.type.evaluate(model, evaluation)
    progress["eval_examples"] = progress.get("eval_examples", 0) + len(evaluation.features)
    values = gates.values()
    return {"score": float(metrics[evaluation.spec.main_metric]), "metrics": {k: float(v) for k, v in metrics.items()},
            "gates": [{"layer": l, "method": m, "gate": round(values[(l, m)], 6), "alpha": round(float(a), 6),
                       "cost": int(costs[(l, m)])} for (l, m), a in zip(gates.cells, gates.alpha.detach())],
            "expected_start": round(start, 5), "expected_end": trajectory[-1], "expected_trajectory": trajectory,
            "loss_trajectory": losses, "steps": total, "examples": examples, "target": int(target),
            "alpha_lr": alpha_lr, "penalty": penalty}
