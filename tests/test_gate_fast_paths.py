"""The shared/fused runtime paths of gated methods (issue 15) against the plain computation they replace:
same weights, the reference path patched in (one gate projection per call, the masked mean as a product
and sum, LoRA's update and an adapter's output materialised at full width and added). Outputs and
gradients agree within 1e-6 (times the largest magnitude where that is above 1: float32 rounding of
a changed order of additions), in train and eval mode, with and without padding; the saved format is
unchanged."""

from __future__ import annotations

import pytest
import torch
import transformers as T

import lamina
from lamina.design import Design, Group
from lamina.methods.adapter import Adapter
from lamina.methods.lora import LoRA
from lamina.methods.prefix import Prefix
from lamina.methods import adapter as adapter_mod
from lamina.methods import lora as lora_mod
from lamina.methods import base
from lamina.methods.base import Gate
import tiny

TOL = 1e-6


def reference_gate_forward(self, x):
    """Gate.forward as it was before the shared evaluation (one projection per call)."""
    scores = torch.sigmoid(self.proj(x))
    mask = self.runtime.mask if self.runtime is not None else None
    if self.causal and x.dim() == 3:
        gate = scores
    elif x.dim() == 3 and mask is not None and tuple(mask.shape) == tuple(x.shape[:2]):
        m = mask.to(scores.dtype).unsqueeze(-1)
        gate = (scores * m).sum(1) / m.sum(1).clamp_min(1.0)
    else:
        gate = scores.mean(dim=tuple(range(1, scores.dim() - 1))) if scores.dim() > 2 else scores
    if gate is not scores:
        gate = gate.reshape(x.shape[0], *([1] * (x.dim() - 1)))
    self.last = gate.detach().flatten()
    if self.runtime is not None and self.runtime.collect_gates:
        self.total += float(self.last.sum())
        self.count += self.last.numel()
    return gate


def reference_paths(monkeypatch):
    monkeypatch.setattr(Gate, "forward", reference_gate_forward)
    monkeypatch.setattr(lora_mod, "add_low_rank", lambda out, delta, x, scale: out + delta(x) * scale)
    monkeypatch.setattr(adapter_mod.Bottleneck, "add_to", lambda self, out, h: out + self(h))


def perturbed(family: str, preset: str, seed: int = 0):
    model = tiny.model(family, seed=seed)
    lamina.apply(model, preset)
    g = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for p in model.lamina_adapters.parameters():  # LoRA B and adapter up start at zero: move them
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.2)
    return model


def run(model, inputs, train: bool):
    model.train(train)
    model.zero_grad(set_to_none=True)
    if train:
        out = model(**inputs)
        loss = out.logits.float().pow(2).mean() if not hasattr(out, "loss") or out.loss is None else out.loss
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
        return out.logits.detach(), grads
    with torch.no_grad():
        return model(**inputs).logits, {}


def compare(family, preset, train, pad, monkeypatch):
    model, reference = perturbed(family, preset), perturbed(family, preset)  # same seeds: same weights
    inputs = tiny.batch(family, size=3, length=9, pad_last=pad)
    fast_out, fast_grads = run(model, inputs, train)
    fast_out2, _ = run(model, inputs, train)  # a second pass: nothing remembered from the first leaks into it
    with monkeypatch.context() as m:
        reference_paths(m)
        ref_out, ref_grads = run(reference, inputs, train)
    scale = max(1.0, float(ref_out.abs().max()))  # float32 rounding: the order of additions changed
    assert (fast_out - ref_out).abs().max() <= TOL * scale, float((fast_out - ref_out).abs().max())
    assert (fast_out2 - ref_out).abs().max() <= TOL * scale
    assert set(fast_grads) == set(ref_grads)
    for name, grad in ref_grads.items():
        diff = (fast_grads[name] - grad).abs().max()
        assert diff <= TOL * max(1.0, float(grad.abs().max())), (name, float(diff))
    return model, reference


def gated(*strategies):
    """A design of the given strategies in every layer of the tiny model."""
    return Design(name="gated", groups=(Group(first=0, last=tiny.LAYERS - 1, strategies=strategies),))


PRESETS = {"unipelt": "unipelt:prefix_mlp=16", "unipelt-prompt": "unipelt-prompt:prefix_mlp=16,prompt_length=3",
           "adapter-houlsby": "adapter-houlsby", "adapter-parallel": "adapter-parallel", "lora": "lora",
           "gated-parallel-adapter": gated(Adapter(bottleneck=8, placement="parallel", gated=True)),
           "gated-lora-qvo+prefix": gated(LoRA(targets=("q", "v", "o"), gated=True), Prefix(length=3, gated=True))}


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("pad", [0, 3])
def test_fast_paths_match_reference_bert(preset, train, pad, monkeypatch):
    compare("bert", PRESETS[preset], train, pad, monkeypatch)


@pytest.mark.parametrize("family", ["gpt2", "llama", "t5"])
@pytest.mark.parametrize("train", [False, True])
def test_fast_paths_match_reference_other_families(family, train, monkeypatch):
    """Pre-LN blocks (the prefix gate and LoRA's read different tensors), per-token decoder gates, Conv1D."""
    compare(family, "unipelt:prefix_mlp=16" if family != "t5" else "unipelt", train, 2, monkeypatch)


def test_gates_evaluated_once_per_layer(monkeypatch):
    """UniPELT on a post-LN model: the prefix and LoRA gates of a layer come from one projection, and
    LoRA's q and v share it; the adapter's gate (another input) is the second."""
    model = perturbed("bert", "unipelt:prefix_mlp=16")
    calls = []
    real = base._gate_values

    def counting(gates, *args):
        calls.append(len(gates))
        return real(gates, *args)

    monkeypatch.setattr(base, "_gate_values", counting)
    with torch.no_grad():
        model(**tiny.batch("bert"))
    assert calls == [2, 1] * tiny.LAYERS


@pytest.mark.parametrize("train", [False, True])
def test_gates_carry_the_projections_that_read_their_input(train, monkeypatch):
    """UniPELT on a post-LN model: LoRA's x·Aᵀ (q and v) comes from the prefix/LoRA gate product and the
    adapter's down projection from its gate's, in every layer (one read of each input, one full-width
    input gradient); no rider computes its own."""
    from lamina.methods.adapter import Bottleneck
    from lamina.methods.lora import LoRADelta

    model = perturbed("bert", "unipelt:prefix_mlp=16")
    riders = [m for m in model.lamina_adapters.modules() if isinstance(m, (LoRADelta, Bottleneck))]
    assert len(riders) == 3 * tiny.LAYERS
    hits, misses = [], []
    real = base.Rider.recall

    def recording(self, x, runtime=None):
        value = real(self, x, runtime)
        if runtime is None:  # the owner asking (the gate asks with its runtime before computing)
            (hits if value is not None else misses).append(self)
        return value

    monkeypatch.setattr(base.Rider, "recall", recording)
    model.train(train)
    with torch.set_grad_enabled(train):
        model(**tiny.batch("bert", pad_last=2))
    assert not misses and sorted(map(id, hits)) == sorted(map(id, riders))


def test_gate_statistics_unchanged(monkeypatch):
    """collect_gates averages (what reports show) are what the per-call gates gave."""
    model, reference = perturbed("bert", "unipelt:prefix_mlp=16"), perturbed("bert", "unipelt:prefix_mlp=16")
    inputs = tiny.batch("bert", pad_last=2)
    with lamina.collect_gates(model), torch.no_grad():
        model(**inputs)
    with monkeypatch.context() as m:
        reference_paths(m)
        with lamina.collect_gates(reference), torch.no_grad():
            reference(**inputs)
    fast, ref = lamina.gate_values(model), lamina.gate_values(reference)
    assert fast.keys() == ref.keys() and fast
    for key in ref:
        assert fast[key] == pytest.approx(ref[key], abs=1e-6), key


def test_padding_change_in_place_is_seen():
    """The masked-mean weights are remembered per mask; editing the mask in place recomputes them."""
    model = perturbed("bert", "unipelt:prefix_mlp=16")
    inputs = tiny.batch("bert")
    with torch.no_grad():
        full = model(**inputs).logits
        inputs["attention_mask"][-1, -3:] = 0
        padded = model(**inputs).logits
        fresh = model(**{k: v.clone() for k, v in inputs.items()}).logits
    assert (padded - fresh).abs().max() <= TOL and (padded - full).abs().max() > 1e-4


@pytest.mark.parametrize("design", ["unipelt", "gated-lora-qvo+prefix", "gated-lora"])
def test_gradient_checkpointing_with_shared_gates(design):
    """A checkpointed block's recomputation evaluates the gates as the original forward did: a value
    remembered outside the block (the prefix gate's pre-hook) is reused, one remembered inside is not."""
    preset = {**PRESETS, "gated-lora": gated(LoRA(gated=True))}[design]
    model, reference = perturbed("bert", preset), perturbed("bert", preset)
    inputs = tiny.batch("bert", pad_last=2)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    out, grads = run(model, inputs, True)
    ref_out, ref_grads = run(reference, inputs, True)
    assert (out - ref_out).abs().max() <= TOL
    for name, grad in ref_grads.items():
        assert (grads[name] - grad).abs().max() <= TOL, name


def test_state_dict_keys_unchanged():
    """No new parameters or buffers: a saved UniPELT adapter keeps its keys (gate.proj.weight/bias per gate)."""
    model = perturbed("bert", "unipelt:prefix_mlp=16")
    keys = [k for k in model.lamina_adapters.state_dict() if ".gate" in k]
    assert keys and all(k.endswith(("proj.weight", "proj.bias")) for k in keys)
    assert all(not k.endswith(("_memo", "peers")) for k in model.state_dict())
