"""Every method on every family: exactly the design's tensors train, frozen tensors never change,
zero-initialised methods leave the output unchanged, prefix/prompt ignore padding, gradients reach
every trainable tensor."""

import pytest
import torch

import lamina
import tiny

PRESETS = [
    "lora", "lora:targets=q+k+v+o+ffn_in+ffn_out,r=2", "bitfit", "bitfit:which=attention", "bitfit:which=query_value",
    "adapter:bottleneck=8", "adapter-houlsby:bottleneck=8", "adapter-parallel:bottleneck=8", "prefix", "prefix:mlp=16", "prompt:length=3", "ln",
    "unipelt:prefix_mlp=16", "unipelt-prompt:prefix_mlp=16,prompt_length=3", "spafit:n1=1,n2=2", "s4:budget=30%",
    "ia3", "ia3:targets=q+o+ffn_in", "dora:r=2,targets=q+v+ffn_out", "rslora:r=4",
]
UNCHANGED_AT_INIT = {"lora", "lora:targets=q+k+v+o+ffn_in+ffn_out,r=2", "bitfit", "bitfit:which=attention",
                     "bitfit:which=query_value", "adapter:bottleneck=8", "adapter-houlsby:bottleneck=8", "adapter-parallel:bottleneck=8", "ln", "spafit:n1=1,n2=2",
                     "ia3", "ia3:targets=q+o+ffn_in", "dora:r=2,targets=q+v+ffn_out", "rslora:r=4"}
NEEDS_PREFIX = ("prefix", "unipelt", "s4")


def cases():
    for family in tiny.FAMILIES:
        for preset in PRESETS:
            if family == "deberta-v2" and preset.startswith(NEEDS_PREFIX):
                continue
            yield family, preset


def _train_steps(model, inputs, steps=3):
    """AdamW steps; returns, per trainable tensor, the largest |grad| seen (zero-init parts such as
    LoRA A or an adapter's down projection only get gradient once their partner has moved)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.01)
    seen = {n: 0.0 for n, p in model.named_parameters() if p.requires_grad}
    for _ in range(steps):
        opt.zero_grad()
        tiny.logits(model, inputs).float().pow(2).mean().backward()
        for n, p in model.named_parameters():
            if p.requires_grad and p.grad is not None:
                seen[n] = max(seen[n], p.grad.abs().max().item())
        opt.step()
    return seen


@pytest.mark.parametrize("family,preset", list(cases()))
def test_method_on_family(family, preset):
    model = tiny.model(family)
    inputs = tiny.batch(family)
    with torch.no_grad():
        before = tiny.logits(model, inputs)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()}

    report = lamina.apply(model, preset)

    trainable = lamina.trainable_names(model)
    assert trainable, "a design must train something"
    assert all(n.startswith("lamina_adapters.default.") for n in trainable)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == report.trainable
    if preset in UNCHANGED_AT_INIT:
        with torch.no_grad():
            assert torch.equal(tiny.logits(model, inputs), before)

    grads = _train_steps(model, inputs)
    for name, largest in grads.items():
        assert largest > 0, f"no gradient reached {name}"
    for name, p in model.named_parameters():
        if name in frozen:
            assert torch.equal(p, frozen[name]), f"frozen {name} changed"


def _padded_pair(family):
    """The same sentence alone and right-padded in a batch with a longer one."""
    alone = tiny.batch(family, seed=3, size=1, length=6)
    other = tiny.batch(family, seed=4, size=1, length=9)
    ids = torch.cat([torch.nn.functional.pad(alone["input_ids"], (0, 3), value=1 if family == "roberta" else 0), other["input_ids"]])
    mask = torch.tensor([[1] * 6 + [0] * 3, [1] * 9])
    padded = dict(input_ids=ids, attention_mask=mask)
    if family in tiny.SEQ2SEQ:
        padded["decoder_input_ids"] = torch.cat([alone["decoder_input_ids"], other["decoder_input_ids"]])
    return alone, padded


@pytest.mark.parametrize("family", [f for f in tiny.FAMILIES if f != "deberta-v2"])
@pytest.mark.parametrize("preset", ["prefix", "prefix:mlp=16", "prompt:length=3", "unipelt-prompt:prefix_mlp=16,prompt_length=2"])
def test_prefix_and_prompt_ignore_padding(family, preset):
    model = tiny.model(family)
    lamina.apply(model, preset)
    _train_steps(model, tiny.batch(family), steps=1)  # move away from init so the check means something
    model.eval()
    alone, padded = _padded_pair(family)
    with torch.no_grad():
        a = tiny.logits(model, alone)[0]
        b = tiny.logits(model, padded)[0]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_prompt_padding_on_deberta():
    alone, padded = _padded_pair("deberta-v2")
    model = tiny.model("deberta-v2")
    lamina.apply(model, "prompt:length=3")
    with torch.no_grad():
        torch.testing.assert_close(tiny.logits(model, alone)[0], tiny.logits(model, padded)[0], atol=1e-5, rtol=1e-4)


def test_exact_trainable_names_bert_lora_and_spafit():
    model = tiny.model("bert")
    lamina.apply(model, "spafit:n1=1,n2=3")
    names = set(lamina.trainable_names(model))
    pre = "lamina_adapters.default."
    lora = {f"{pre}groups.1.lora.3.attention-self-{t}.{m}" for t in ("query", "value") for m in "AB"}
    assert lora <= names
    assert not any(".0." in n.removeprefix(pre + "groups.") and "groups.0.bitfit.0" in n for n in names)
    bitfit_layers = {n.split(".")[5] for n in names if ".bitfit." in n}
    assert bitfit_layers == {"1", "2", "3"}
    assert {f"{pre}heads.classifier.weight", f"{pre}heads.classifier.bias", f"{pre}heads.bert-pooler.dense.weight"} <= names
    # layer 0 is frozen: nothing of it trains
    assert not [n for n in names if ".lora.0." in n or ".bitfit.0." in n]


def test_gpt2_fused_qkv_lora_touches_only_q_and_v_slices():
    model = tiny.model("gpt2")
    lamina.apply(model, "lora:r=2,targets=q+v")
    deltas = model.lamina_adapters["default"].groups["0"]["lora"]["0"]
    assert set(deltas) == {"attn-c_attn-p0of3", "attn-c_attn-p2of3"}
    assert deltas["attn-c_attn-p0of3"].B.shape == (tiny.HIDDEN, 2)
    _train_steps(model, tiny.batch("gpt2"), steps=1)
    lamina.merge(model)
    c_attn = model.transformer.h[0].attn.c_attn
    original = tiny.model("gpt2").transformer.h[0].attn.c_attn.weight
    changed = (c_attn.weight != original).any(dim=0)
    h = tiny.HIDDEN
    assert changed[:h].all() and not changed[h:2 * h].any() and changed[2 * h:].all()


def test_gates_are_readable_after_forward():
    model = tiny.model("bert")
    lamina.apply(model, "unipelt:prefix_mlp=16")
    with lamina.collect_gates(model), torch.no_grad():
        tiny.logits(model, tiny.batch("bert"))
        tiny.logits(model, tiny.batch("bert", seed=5))
    values = lamina.gate_values(model)
    assert sorted(values) == list(range(tiny.LAYERS))
    for layer in values.values():
        assert set(layer) == {"adapter", "prefix", "lora"}
        assert all(0.0 < v < 1.0 for v in layer.values())


def test_disable_gives_base_outputs_back_exactly():
    model = tiny.model("llama")
    inputs = tiny.batch("llama")
    with torch.no_grad():
        base = tiny.logits(model, inputs)
    lamina.apply(model, "unipelt-prompt:prefix_mlp=16,prompt_length=2")
    _train_steps(model, inputs, steps=1)
    lamina.set_active(model, None)
    with torch.no_grad():
        assert torch.equal(tiny.logits(model, inputs), base)


def test_dry_run_changes_nothing():
    model = tiny.model("bert")
    state = {n: p.requires_grad for n, p in model.named_parameters()}
    report = lamina.apply(model, "unipelt:prefix_mlp=16", dry_run=True)
    assert report.trainable > 0
    assert {n: p.requires_grad for n, p in model.named_parameters()} == state
    assert not hasattr(model, "lamina_adapters")


def test_head_can_stay_frozen():
    model = tiny.model("bert")
    report = lamina.apply(model, {"groups": [{"layers": "0-3", "strategies": ["bitfit"]}], "train_head": False})
    assert not any("heads" in n for n in lamina.trainable_names(model))
    assert all(r.method != "head" for r in report.rows)
