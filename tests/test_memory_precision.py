"""Gradient checkpointing gives the gradients of the run without it, for every preset and family
(per-forward state — the prefix MLP cache, the forward counter, gates — survives a block's
recomputation); training runs with it and with bf16 autocast; the prefix MLP's keys/values are reused
across inference forwards until its weights change."""

from __future__ import annotations

import json

import pytest
import torch

import lamina
import tiny
from lamina.inject import adapters_of, runtime_of

PRESETS = ["lora", "bitfit", "adapter-houlsby:bottleneck=4", "adapter-parallel:bottleneck=4", "prefix:length=3",
           "prefix:mlp=16", "prompt:length=3", "ln", "unipelt:prefix_mlp=16", "unipelt-prompt:prefix_mlp=16,prompt_length=2",
           "spafit:n1=1,n2=2", "s4:budget=30%", "ia3", "dora:r=2", "rslora:r=2"]
FAMILIES = ["bert", "gpt2", "llama", "t5"]


def grads(family: str, preset: str, checkpointing: bool) -> dict[str, torch.Tensor]:
    model = tiny.model(family).train()
    lamina.apply(model, preset)
    with torch.no_grad():  # move zero-initialised parts, so every tensor gets a gradient
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 0.05)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    steps = runtime_of(model).step
    tiny.logits(model, tiny.batch(family, pad_last=2)).float().pow(2).mean().backward()
    assert runtime_of(model).step == steps + 1  # one forward counted, recomputation or not
    return {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("preset", PRESETS)
def test_checkpointing_gives_the_same_gradients(family, preset):
    plain = grads(family, preset, checkpointing=False)
    recomputed = grads(family, preset, checkpointing=True)
    assert plain.keys() == recomputed.keys()
    for name, grad in plain.items():
        assert grad is not None and recomputed[name] is not None, name
        assert torch.allclose(grad, recomputed[name], atol=1e-6, rtol=1e-5), name


def test_prefix_mlp_output_is_reused_at_inference_until_the_weights_change():
    model = tiny.model("bert")
    lamina.apply(model, "prefix:mlp=16")
    group = adapters_of(model)["default"].groups["0"]["prefix"]
    calls = []
    group.mlp.register_forward_hook(lambda *a: calls.append(1))
    inputs = tiny.batch("bert")
    with torch.no_grad():
        first = tiny.logits(model, inputs)
        assert torch.equal(tiny.logits(model, inputs), first)
    assert len(calls) == 1
    with torch.no_grad():
        group.embedding.add_(0.1)  # an optimizer step does this in place
        changed = tiny.logits(model, inputs)
    assert len(calls) == 2 and not torch.equal(changed, first)
    tiny.logits(model, inputs).sum().backward()  # with gradients on: computed for this forward
    assert len(calls) == 3 and group.embedding.grad is not None


@pytest.mark.parametrize("options", [dict(gradient_checkpointing=True), dict(precision="bf16")])
def test_training_runs_with_checkpointing_or_bf16(options, tmp_path):
    from test_train import FAST, make_model_dir, write_sst2

    from lamina.train import train

    results = train(make_model_dir(tmp_path), "sst2", "unipelt:prefix_mlp=16", write_sst2(tmp_path), tmp_path / "run",
                    epochs=1, **FAST, **options)
    assert (tmp_path / "run" / "adapter.safetensors").is_file() and results["evaluations"]
    assert all(results["options"][k] == v for k, v in options.items())
    info = json.loads((tmp_path / "run" / "design.json").read_text())
    assert info["dtype"] == "float32"  # adapter tensors stay float32 under bf16 autocast


def test_bad_precision_is_one_line(tmp_path):
    from test_train import make_model_dir, write_sst2

    from lamina.errors import LaminaError
    from lamina.train import train

    with pytest.raises(LaminaError, match="precision must be fp32, bf16 or fp16"):
        train(make_model_dir(tmp_path), "sst2", "lora", write_sst2(tmp_path), tmp_path / "run", precision="fp8")
    if not torch.cuda.is_available():
        with pytest.raises(LaminaError, match="fp16 needs a CUDA device"):
            train(make_model_dir(tmp_path), "sst2", "lora", write_sst2(tmp_path), tmp_path / "run", precision="fp16")


def test_checkpointing_switch_under_either_transformers_name(tmp_path):
    """Older transformers know only `gradient_checkpointing`; newer ones renamed it and warn on the old name
    (the demo printed that warning). Either way the switch and its non-reentrant kwargs arrive."""
    import dataclasses
    import warnings

    from transformers import TrainingArguments

    from lamina.train import _checkpointing_args

    @dataclasses.dataclass
    class OldArguments:
        gradient_checkpointing: bool = False

    assert _checkpointing_args(OldArguments, True) == {"gradient_checkpointing": True,
                                                       "gradient_checkpointing_kwargs": {"use_reentrant": False}}
    for on in (True, False):
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            args = TrainingArguments(output_dir=str(tmp_path), **_checkpointing_args(TrainingArguments, on))
        assert bool(args.gradient_checkpointing) is on
        assert args.gradient_checkpointing_kwargs == ({"use_reentrant": False} if on else None)
