"""PEFT interop for IA³, DoRA and rsLoRA against the real `peft` package: lamina adapters export to
folders `PeftModel.from_pretrained` loads with identical logits, PEFT-made adapters import into lamina
with identical logits, and what one PEFT adapter cannot hold fails in one line."""

import pytest
import torch

import lamina
import tiny
from lamina.errors import LaminaError

peft = pytest.importorskip("peft")

FAMILIES = ("bert", "roberta", "t5", "gpt2", "llama", "deberta-v2")
TASK = {"t5": "SEQ_2_SEQ_LM"}
FFN_OUT = {"bert": "output.dense", "roberta": "output.dense", "deberta-v2": "output.dense", "t5": "wo",
           "gpt2": "mlp.c_proj", "llama": "down_proj"}
KV = {"bert": ["key", "value"], "roberta": ["key", "value"], "deberta-v2": ["key_proj", "value_proj"],
      "t5": ["k", "v"], "gpt2": ["c_attn"], "llama": ["k_proj", "v_proj"]}


logits = tiny.padded_logits
perturb = tiny.perturb



def base_and_adapter(tmp_path, family, design):
    folder = tmp_path / "base"
    tiny.model(family).save_pretrained(folder)
    model = type(tiny.model(family)).from_pretrained(folder).eval()
    lamina.apply(model, design)
    perturb([p for p in model.parameters() if p.requires_grad])
    return folder, model, lamina.save(model, tmp_path / "lamina")


def load_base(folder, family):
    return type(tiny.model(family)).from_pretrained(folder).eval()


DESIGNS = {
    "ia3": lambda family: {"groups": [{"layers": "0-1", "strategies": [{"ia3": {"targets": "k+v+ffn"}}]},
                                      {"layers": "3-3", "strategies": [{"ia3": {"targets": "q+ffn"}}]}]},
    "dora": lambda family: {"groups": [{"layers": "0-3", "strategies": [{"lora": {"r": 2, "targets": "o+ffn_in", "dora": True}}]}]},
    "rslora": lambda family: {"groups": [{"layers": "1-2", "strategies": [{"lora": {"r": 4, "alpha": 3, "targets": "o", "rslora": True}}]}]},
}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", sorted(DESIGNS))
def test_export_then_peft_then_back(kind, family, tmp_path):
    base, model, saved = base_and_adapter(tmp_path, family, DESIGNS[kind](family))
    expected = logits(model, family)
    out = lamina.export_peft(saved, tmp_path / "peft")
    peft_model = peft.PeftModel.from_pretrained(load_base(base, family), out).eval()
    assert torch.allclose(logits(peft_model, family), expected, atol=1e-6, rtol=0)
    back = lamina.import_peft(out, tmp_path / "back")
    fresh = load_base(base, family)
    lamina.load(fresh, back)
    assert torch.allclose(logits(fresh, family), expected, atol=1e-6, rtol=0)


def peft_config(kind, family):
    task = TASK.get(family, "SEQ_CLS")
    if kind == "ia3":
        # ".0.output.dense" singles out BERT's FFN output (PEFT matches names by suffix; "output.dense"
        # alone would also scale the input of attention.output.dense, which lamina refuses to import)
        ffn = [f"{i}.{FFN_OUT[family]}" for i in range(tiny.LAYERS)]
        return peft.IA3Config(target_modules=KV[family] + ffn, feedforward_modules=ffn,
                              fan_in_fan_out=family == "gpt2", task_type=task)
    targets = ["c_attn"] if family == "gpt2" else KV[family]
    return peft.LoraConfig(r=2, lora_alpha=5, target_modules=targets, use_dora=kind == "dora", use_rslora=kind == "rslora",
                           fan_in_fan_out=family == "gpt2", task_type=task)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", sorted(DESIGNS))
def test_peft_adapter_imports_with_identical_logits(kind, family, tmp_path):
    base = tmp_path / "base"
    tiny.model(family).save_pretrained(base)
    peft_model = peft.get_peft_model(load_base(base, family), peft_config(kind, family))
    perturb([p for p in peft_model.parameters() if p.requires_grad])
    expected = logits(peft_model.eval(), family)
    peft_model.save_pretrained(tmp_path / "peft")
    model = load_base(base, family)
    lamina.import_peft(tmp_path / "peft", tmp_path / "lamina", base=model)
    # DoRA's normalisation is computed in another order than PEFT's: float32 rounding, not a difference
    tolerance = 1e-5 if kind == "dora" else 1e-6
    assert torch.allclose(logits(model, family), expected, atol=tolerance, rtol=0), (logits(model, family) - expected).abs().max()
    strategy = lamina.Design.from_dict(__import__("json").loads((tmp_path / "lamina" / "design.json").read_text())["design"]).groups[0].strategies[0]
    assert strategy.method == ("ia3" if kind == "ia3" else "lora")
    if kind != "ia3":
        assert (strategy.dora, strategy.rslora) == (kind == "dora", kind == "rslora")


def test_one_peft_adapter_holds_one_method(tmp_path):
    _, _, saved = base_and_adapter(tmp_path, "bert", {"groups": [
        {"layers": "0-1", "strategies": [{"lora": {"r": 2}}]}, {"layers": "2-3", "strategies": ["ia3"]}]})
    with pytest.raises(LaminaError, match=r"a PEFT adapter holds one method; this design mixes LORA in groups\[0\] .*IA3 in groups\[1\]"):
        lamina.export_peft(saved, tmp_path / "peft")
    assert not (tmp_path / "peft").exists()


def test_dora_differing_between_groups_is_refused(tmp_path):
    _, _, saved = base_and_adapter(tmp_path, "bert", {"groups": [
        {"layers": "0-1", "strategies": [{"lora": {"r": 2, "dora": True}}]}, {"layers": "2-3", "strategies": [{"lora": {"r": 2}}]}]})
    with pytest.raises(LaminaError, match="LoRA dora differs between groups"):
        lamina.export_peft(saved, tmp_path / "peft")
