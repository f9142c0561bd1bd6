"""IA³, DoRA and rsLoRA: each computes its paper's formula (checked against a hand computation on the
projection's own weights), merges exactly (merged == unmerged on every family, unmerge bit-exact), and
a rescaling never merges over a delta that stays a hook."""

import math

import pytest
import torch

import lamina
import tiny
from lamina.inject import CONTAINER, adapters_of

FAMILIES = ("bert", "roberta", "deberta-v2", "t5", "gpt2", "llama")
NO_BIASES = ("t5", "llama")



logits = tiny.padded_logits
perturb = tiny.perturb

base_state = tiny.base_state


def capture(module, fn):
    """(input, output) of `module` during fn()."""
    seen = {}
    handle = module.register_forward_hook(lambda m, args, out: seen.update(x=args[0], out=out))
    try:
        fn()
    finally:
        handle.remove()
    return seen["x"], seen["out"]


def test_ia3_scales_keys_values_and_the_ffn_activation():
    model = tiny.model("bert")
    lamina.apply(model, "ia3")
    perturb(model)
    layer = model.bert.encoder.layer[1]
    vectors = adapters_of(model)["default"].groups["0"]["ia3"]["1"]
    x, out = capture(layer.attention.self.value, lambda: logits(model, "bert"))
    expected = (x @ layer.attention.self.value.weight.t() + layer.attention.self.value.bias) * vectors["attention-self-value"]
    assert torch.allclose(out, expected, atol=1e-6)
    h, out = capture(layer.output.dense, lambda: logits(model, "bert"))  # h: the FFN activation, already scaled
    raw, _ = capture(layer.intermediate, lambda: logits(model, "bert"))
    assert torch.allclose(out, h @ layer.output.dense.weight.t() + layer.output.dense.bias)
    activation = layer.intermediate(raw)
    assert torch.allclose(h, activation * vectors["output-dense-in"], atol=1e-6)


def test_dora_is_magnitude_times_normalised_direction():
    model = tiny.model("bert")
    lamina.apply(model, "dora:r=2,targets=q,alpha=3")
    perturb(model)
    proj = model.bert.encoder.layer[0].attention.self.query
    delta = adapters_of(model)["default"].groups["0"]["lora"]["0"]["attention-self-query"]
    x, out = capture(proj, lambda: logits(model, "bert"))
    scale = 3 / 2
    adapted = proj.weight + scale * delta.B @ delta.A  # [out, in]
    weight = delta.magnitude.unsqueeze(1) * adapted / adapted.norm(dim=1, keepdim=True)
    assert torch.allclose(out, x @ weight.t() + proj.bias, atol=1e-5)


def test_dora_starts_at_the_weight_norm_and_rslora_scales_by_sqrt_r():
    model = tiny.model("llama")
    lamina.apply(model, "dora:r=4,targets=v")
    proj = model.model.layers[2].self_attn.v_proj
    delta = adapters_of(model)["default"].groups["0"]["lora"]["2"]["self_attn-v_proj"]
    assert torch.equal(delta.magnitude, proj.weight.norm(dim=1))
    assert lamina.LoRA(r=16, alpha=8, rslora=True).scaling == pytest.approx(8 / math.sqrt(16))
    assert lamina.LoRA(r=16, alpha=8).scaling == pytest.approx(8 / 16)
    assert lamina.LoRA(r=4, rslora=True).scaling == pytest.approx(8 / 2)  # default alpha = 2r


def test_dora_and_gated_are_refused_together():
    with pytest.raises(lamina.DesignError, match="dora and gated"):
        lamina.Design.from_dict({"groups": [{"layers": 0, "strategies": [{"lora": {"dora": True, "gated": True}}]}]})


MERGEABLE = {
    "groups": [
        {"layers": "0-1", "strategies": [{"lora": {"r": 2, "targets": "q+v+ffn_out", "dora": True}}, {"ia3": {"targets": "k+v+ffn"}}]},
        {"layers": "2-3", "strategies": [{"lora": {"r": 3, "targets": "ffn_in", "rslora": True}}, "ia3", "ln"]},
    ]
}


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("family", FAMILIES)
def test_ia3_dora_rslora_merge_exactly_and_unmerge(family, exact):
    model = tiny.model(family)
    before = base_state(model)
    lamina.apply(model, MERGEABLE)
    perturb(model)
    expected = logits(model, family)
    assert lamina.merge(model, exact=exact) == []
    assert torch.allclose(logits(model, family), expected, atol=1e-5, rtol=0)
    lamina.unmerge(model)
    if exact:  # copies kept: bit for bit
        assert all(torch.equal(v, before[k]) for k, v in base_state(model).items())
        assert torch.equal(logits(model, family), expected)
    else:  # no copies: DoRA's and IA3's factors divided out, LoRA subtracted, within rounding
        assert all(torch.allclose(v, before[k], atol=1e-6, rtol=1e-5) for k, v in base_state(model).items())


@pytest.mark.parametrize("family", ["t5", "llama"])
def test_ia3_is_kept_when_an_unmerged_delta_precedes_it(family):
    """BitFit on bias-less projections stays a hook; IA³ on the same outputs would then scale a delta
    that is added after the merged weights, so it stays a hook too — and the outputs still agree."""
    model = tiny.model(family)
    lamina.apply(model, {"groups": [{"layers": "0-1", "strategies": ["bitfit", {"ia3": {"targets": "k+v+ffn"}}]}]})
    perturb(model)
    expected = logits(model, family)
    kept = lamina.merge(model)
    assert any("BitFit" in k for k in kept) and any("ia3" in k for k in kept)
    assert torch.allclose(logits(model, family), expected, atol=1e-5, rtol=0)


def test_ia3_trains_and_saves_and_reloads(tmp_path):
    model = tiny.model("gpt2")
    lamina.apply(model, "ia3:targets=q+k+v+ffn")
    perturb(model)
    expected = logits(model, "gpt2")
    lamina.save(model, tmp_path / "a")
    fresh = tiny.model("gpt2")
    lamina.load(fresh, tmp_path / "a")
    assert torch.equal(logits(fresh, "gpt2"), expected)


def test_ia3_unknown_target_is_one_clear_error():
    with pytest.raises(lamina.DesignError, match="unknown target 'ffn_mid'"):
        lamina.apply(tiny.model("bert"), "ia3:targets=k+ffn_mid")
