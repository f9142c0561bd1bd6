"""Reported counts equal closed-form formulas (DESIGN.md's hand-checkable BERT-base numbers)."""

import pytest
import transformers as T

import lamina
from lamina.arch import meta_model

H, L, FFN = 768, 12, 3072


@pytest.fixture(scope="module")
def bert_base():
    return meta_model(T.BertConfig(), "classification", 2)


def rows(report):
    return {r.method: (r.trainable, r.stored) for r in report.rows}


@pytest.mark.parametrize(
    "preset,method,trainable,stored",
    [
        ("lora:r=8,targets=q+v", "lora", L * 2 * 8 * (H + H), L * 2 * 8 * (H + H)),  # 294,912
        ("prefix:length=10", "prefix", L * 2 * 10 * H, L * 2 * 10 * H),  # 184,320
        # MLP re-parameterised: embedding + Linear(H,512) + Linear(512, L*2*H); stored = keys/values only
        ("prefix:length=10,mlp=512", "prefix", 10 * H + (H * 512 + 512) + (512 * L * 2 * H + L * 2 * H), L * 2 * 10 * H),
        ("adapter:bottleneck=48", "adapter", L * (H * 48 + 48 + 48 * H + H), L * (H * 48 + 48 + 48 * H + H)),  # 894,528
        ("adapter-houlsby:bottleneck=48", "adapter", 2 * 894_528, 2 * 894_528),
        ("adapter-parallel", "adapter", 894_528, 894_528),  # reduction factor 16 -> 48
        # biases of q,k,v,o, ffn_in, ffn_out + the two LayerNorm betas, per layer
        ("bitfit", "bitfit", L * (4 * H + FFN + H + 2 * H), L * (4 * H + FFN + H + 2 * H)),
        ("bitfit:which=attention", "bitfit", L * 4 * H, L * 4 * H),
        ("bitfit:which=query_value", "bitfit", L * 2 * H, L * 2 * H),
        ("ln", "ln", L * 2 * 2 * H, L * 2 * 2 * H),
        ("prompt:length=20", "prompt", 20 * H, 20 * H),
        # IA3: vectors on keys, values and the FFN's inner activation: 12 x (768 + 768 + 3072) = 55,296
        ("ia3", "ia3", L * (H + H + FFN), L * (H + H + FFN)),
        ("ia3:targets=q+o", "ia3", L * 2 * H, L * 2 * H),
        # DoRA: LoRA plus one magnitude per output feature of each adapted projection: 294,912 + 18,432
        ("dora:r=8,targets=q+v", "lora", L * 2 * (8 * (H + H) + H), L * 2 * (8 * (H + H) + H)),
        ("rslora:r=8,targets=q+v", "lora", 294_912, 294_912),  # a different scale, the same tensors
    ],
)
def test_method_counts_bert_base(bert_base, preset, method, trainable, stored):
    report = lamina.apply(bert_base, preset, dry_run=True)
    assert rows(report)[method] == (trainable, stored)
    assert rows(report)["head"] == (H * H + H + H * 2 + 2,) * 2  # pooler + classifier


def test_design_md_numbers(bert_base):
    assert rows(lamina.apply(bert_base, "lora:r=8,targets=q+v", dry_run=True))["lora"][0] == 294_912
    assert rows(lamina.apply(bert_base, "prefix:length=10", dry_run=True))["prefix"][1] == 184_320
    assert rows(lamina.apply(bert_base, "adapter:bottleneck=48", dry_run=True))["adapter"][0] == 894_528


def test_unipelt_counts_bert_base(bert_base):
    gate = H + 1  # 769
    r = rows(lamina.apply(bert_base, "unipelt", dry_run=True))
    assert r["adapter"] == (894_528 + L * gate,) * 2
    assert r["lora"] == (294_912 + L * gate,) * 2
    mlp = 10 * H + (H * 512 + 512) + (512 * L * 2 * H + L * 2 * H)
    assert r["prefix"] == (mlp + L * gate, 184_320 + L * gate)


def test_unipelt_prompt_adds_prompt_tokens(bert_base):
    r = rows(lamina.apply(bert_base, "unipelt-prompt:prompt_length=20", dry_run=True))
    assert r["prompt"] == (20 * H, 20 * H)


def test_spafit_bert_large():
    model = meta_model(T.BertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096))
    report = lamina.apply(model, "spafit:n1=8,n2=16,r=8,targets=q+v", dry_run=True)
    h, ffn = 1024, 4096
    bitfit_per_layer = 4 * h + ffn + h + 2 * h  # 11,264
    by_group = {(r.group, r.method): r.trainable for r in report.rows}
    assert by_group[("0", "bitfit")] == 8 * bitfit_per_layer  # layers 8-15
    assert by_group[("1", "bitfit")] == 8 * bitfit_per_layer  # layers 16-23
    assert by_group[("1", "lora")] == 8 * 2 * 8 * (h + h)  # 262,144
    assert [r.layers for r in report.rows[:2]] == ["8-15", "16-23"]
    head = h * h + h + 2 * h + 2
    assert report.trainable == 16 * bitfit_per_layer + 262_144 + head
    assert report.percent(False) == pytest.approx(100 * (16 * bitfit_per_layer + 262_144) / (report.base_params - head))


def test_gpt2_and_llama_counts():
    gpt2 = meta_model(T.GPT2Config(n_embd=768, n_layer=12, n_head=12))
    assert rows(lamina.apply(gpt2, "lora:r=8,targets=q+v", dry_run=True))["lora"][0] == 294_912  # slices of c_attn
    llama = meta_model(T.LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8))
    kv = 4096 // 32 * 8  # 1024: grouped-query attention shrinks k/v
    assert rows(lamina.apply(llama, "lora:r=16,targets=q+v", dry_run=True))["lora"][0] == 32 * 16 * ((4096 + 4096) + (4096 + kv))
    assert rows(lamina.apply(llama, "prefix:length=10", dry_run=True))["prefix"][1] == 32 * 2 * 10 * kv
    assert rows(lamina.apply(llama, "ia3", dry_run=True))["ia3"][0] == 32 * (kv + kv + 11008)  # 417,792
    assert rows(lamina.apply(gpt2, "ia3", dry_run=True))["ia3"][0] == 55_296  # k, v: slices of c_attn
    assert rows(lamina.apply(gpt2, "dora:r=8,targets=q+v", dry_run=True))["lora"][0] == 294_912 + 12 * 2 * 768


def test_design_md_ia3_number(bert_base):
    assert rows(lamina.apply(bert_base, "ia3", dry_run=True))["ia3"][0] == 55_296
