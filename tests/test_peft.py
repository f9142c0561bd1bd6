"""PEFT interop with the real `peft` package: lamina LoRA designs (per-group ranks, any layers, task
head) export to adapters that `PeftModel.from_pretrained` loads with identical logits, PEFT LoRA
adapters import into lamina with identical logits, and what PEFT cannot express fails in one line."""

import json

import pytest
import safetensors.torch
import torch
from typer.testing import CliRunner

import lamina
import tiny
from lamina.cli import app
from lamina.errors import LaminaError
from lamina.inject import CONTAINER

peft = pytest.importorskip("peft")

FAMILIES = ("bert", "roberta", "t5", "gpt2", "llama", "deberta-v2")
LORA_DESIGNS = {  # several groups with their own rank/alpha where the family allows it
    "bert": {"groups": [{"layers": "0-1", "strategies": [{"lora": {"r": 4, "targets": "q+v"}}]},
                        {"layers": "2-3", "strategies": [{"lora": {"r": 2, "alpha": 3, "targets": "q+k+v+o+ffn_in+ffn_out"}}]}]},
    "roberta": "lora:r=4,targets=q+k+v",
    "t5": {"groups": [{"layers": "0-0", "strategies": [{"lora": {"r": 4, "targets": "q+v"}}]},
                      {"layers": "2-3", "strategies": [{"lora": {"r": 2, "alpha": 3, "targets": "q+o+ffn_in"}}]}]},
    "gpt2": {"groups": [{"layers": "1-3", "strategies": [{"lora": {"r": 4, "targets": "c_attn+o"}}]}]},
    "llama": {"groups": [{"layers": "0-1", "strategies": [{"lora": {"r": 4, "targets": "q+v+ffn_in"}}]},
                         {"layers": "3-3", "strategies": [{"lora": {"r": 8, "alpha": 4, "targets": "q+v+ffn_in"}}]}]},
    "deberta-v2": "lora:r=4",
}
PEFT_CONFIGS = {  # PEFT-side adapters to import: layer filters, rank patterns, extra head modules
    "bert": dict(target_modules=["query", "value"], layers_to_transform=[1, 2], rank_pattern={r"layer\.2\..*": 2},
                 modules_to_save=["pooler"]),
    "roberta": dict(target_modules=["query", "key", "value", "dense"]),
    "t5": dict(target_modules=["q", "v"], layers_to_transform=[1], layers_pattern="block"),
    "gpt2": dict(target_modules=["c_attn", "c_fc"], fan_in_fan_out=True),
    "llama": dict(target_modules="all-linear", alpha_pattern={r"layers\.3\..*": 16}),
    "deberta-v2": dict(target_modules=["query_proj", "value_proj"], rank_pattern={r"layer\.[01]\..*": 2}),
}
TASK = {"t5": "SEQ_2_SEQ_LM"}



logits = tiny.padded_logits
perturb = tiny.perturb



def base_dir(tmp_path, family):
    folder = tmp_path / "base"
    tiny.model(family).save_pretrained(folder)
    return folder


def load_base(folder, family):
    return type(tiny.model(family)).from_pretrained(folder).eval()


def lamina_adapter(tmp_path, family, design):
    folder = base_dir(tmp_path, family)
    model = load_base(folder, family)
    lamina.apply(model, design)
    perturb([p for p in model.parameters() if p.requires_grad])
    return folder, model, lamina.save(model, tmp_path / "lamina")


@pytest.mark.parametrize("family", FAMILIES)
def test_export_loads_in_peft_with_identical_logits(family, tmp_path):
    base, model, saved = lamina_adapter(tmp_path, family, LORA_DESIGNS[family])
    expected = logits(model, family)
    out = lamina.export_peft(saved, tmp_path / "peft")

    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["base_model_name_or_path"] == str(base)
    assert config["task_type"] == TASK.get(family, "SEQ_CLS")
    if family != "t5":
        assert config["modules_to_save"]  # the trained head
    if family in ("bert", "llama", "t5"):
        assert config["rank_pattern"] and config["alpha_pattern"]
    if family == "gpt2":
        assert config["layers_to_transform"] == [1, 2, 3] and config["layers_pattern"] == "h" and config["fan_in_fan_out"]
    keys = set(safetensors.torch.load_file(out / "adapter_model.safetensors"))
    assert all(k.startswith("base_model.model.") for k in keys)

    peft_model = peft.PeftModel.from_pretrained(load_base(base, family), out).eval()
    assert torch.equal(logits(peft_model, family), expected)

    back = lamina.import_peft(out, tmp_path / "back")  # and the way back: same tensors
    original = safetensors.torch.load_file(saved / "adapter.safetensors")
    again = safetensors.torch.load_file(back / "adapter.safetensors")
    assert original.keys() == again.keys() and all(torch.equal(original[k], again[k]) for k in original)


@pytest.mark.parametrize("family", FAMILIES)
def test_import_peft_adapter_with_identical_logits(family, tmp_path):
    base = base_dir(tmp_path, family)
    cfg = peft.LoraConfig(r=4, lora_alpha=8, task_type=TASK.get(family, "SEQ_CLS"), **PEFT_CONFIGS[family])
    peft_model = peft.get_peft_model(load_base(base, family), cfg)
    perturb([p for p in peft_model.parameters() if p.requires_grad])
    peft_model.eval()
    expected = logits(peft_model, family)
    peft_model.save_pretrained(tmp_path / "peft")

    result = CliRunner().invoke(app, ["import-peft", "--adapter", str(tmp_path / "peft"), "--output", str(tmp_path / "lamina")])
    assert result.exit_code == 0, result.output
    model = load_base(base, family)
    report = lamina.load(model, tmp_path / "lamina")
    assert {r.method for r in report.rows} <= {"lora", "head"}
    assert torch.equal(logits(model, family), expected)


def test_import_into_a_loaded_model(tmp_path):
    base = base_dir(tmp_path, "bert")
    peft_model = peft.get_peft_model(load_base(base, "bert"), peft.LoraConfig(r=2, target_modules=["query"], task_type="SEQ_CLS"))
    perturb([p for p in peft_model.parameters() if p.requires_grad])
    expected = logits(peft_model.eval(), "bert")
    peft_model.save_pretrained(tmp_path / "peft")
    model = load_base(base, "bert")
    lamina.import_peft(tmp_path / "peft", tmp_path / "lamina", base=model, name="imported")
    assert torch.equal(logits(model, "bert"), expected)  # left applied and active
    design = json.loads((tmp_path / "lamina" / "design.json").read_text())["design"]
    assert design["groups"] == [{"first": 0, "last": 3, "stack": None, "strategies": [
        {"method": "lora", "r": 2, "alpha": 8.0, "dropout": 0.0, "targets": ["q"], "gated": False,
             "rslora": False, "dora": False}]}]


# --- what PEFT cannot express --------------------------------------------------------------------------
@pytest.mark.parametrize("family,design,part", [
    ("bert", "bitfit", "BitFit"),
    ("bert", "adapter:bottleneck=4", "bottleneck adapters"),
    ("bert", "prefix", "prefix tuning"),
    ("bert", "prompt:length=2", "prompt tuning"),
    ("bert", "ln", "LayerNorm tuning"),
    ("bert", {"groups": [{"layers": "0-3", "strategies": [{"lora": {"gated": True}}]}]}, "gated LoRA"),
    ("bert", "spafit:n1=1,n2=2", "BitFit"),
    ("gpt2", "lora", "slice 1/3 of the fused c_attn"),
    ("bert", "full", "full fine-tuning"),
])
def test_export_refuses_what_peft_cannot_express(family, design, part, tmp_path):
    model = tiny.model(family)
    lamina.apply(model, design)
    saved = lamina.save(model, tmp_path / "lamina")
    with pytest.raises(LaminaError) as err:
        lamina.export_peft(saved, tmp_path / "peft")
    assert part in str(err.value) and "\n" not in str(err.value)
    result = CliRunner().invoke(app, ["export-peft", "--adapter", str(saved), "--output", str(tmp_path / "peft")])
    assert result.exit_code == 2 and part in result.output
    assert not (tmp_path / "peft").exists()


def write_peft(tmp_path, config: dict, tensors: dict | None = None, pickle=False):
    folder = tmp_path / "peft"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4, **config}))
    if pickle:
        torch.save(tensors or {}, folder / "adapter_model.bin")
    else:
        safetensors.torch.save_file(tensors or {}, folder / "adapter_model.safetensors")
    return folder


@pytest.mark.parametrize("config,tensors,message", [
    ({"peft_type": "PREFIX_TUNING"}, None, "PEFT method 'PREFIX_TUNING' cannot be imported"),
    ({"lora_bias": True, "target_modules": ["query"]}, None, "LoRA bias terms"),
    ({"peft_type": "IA3", "target_modules": ["query"], "feedforward_modules": []}, None, "is missing"),
    ({"peft_type": "IA3", "target_modules": ["query"], "feedforward_modules": ["key"]}, None, "PEFT rejects this config"),
    ({"task_type": "NOT_A_TASK"}, None, "unknown task_type 'NOT_A_TASK'"),
    ({"bias": "all", "target_modules": ["query"]}, None, "bias='all'"),
    ({"target_modules": ["word_embeddings"]}, None, "Linear/Conv1D projections only"),
    ({"target_modules": ["query"]}, {}, "is missing"),
    ({"target_modules": ["classifier"]}, None, "outside the transformer blocks"),
    ({"target_modules": ["nothing_like_this"]}, None, "targets no module"),
])
def test_import_refusals(config, tensors, message, tmp_path):
    base = base_dir(tmp_path, "bert")
    folder = write_peft(tmp_path, {"base_model_name_or_path": str(base), "task_type": "SEQ_CLS", **config}, tensors)
    result = CliRunner().invoke(app, ["import-peft", "--adapter", str(folder), "--output", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert message in result.output and len([l for l in result.output.splitlines() if "error" in l]) == 1
    assert not (tmp_path / "out").exists()


def test_import_refuses_pickle_and_unknown_extra_tensors(tmp_path, monkeypatch):
    base = base_dir(tmp_path, "bert")
    folder = write_peft(tmp_path, {"base_model_name_or_path": str(base), "target_modules": ["query"]}, pickle=True)
    monkeypatch.setattr(torch, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError("unpickled")))
    with pytest.raises(LaminaError, match="refusing to load adapter_model.bin"):
        lamina.import_peft(folder, tmp_path / "out")
    (folder / "adapter_model.bin").unlink()
    tensors = {f"base_model.model.bert.encoder.layer.{i}.attention.self.query.lora_{x}.weight": torch.zeros(shape)
               for i in range(4) for x, shape in (("A", (2, 32)), ("B", (32, 2)))}
    tensors["base_model.model.bert.embeddings.word_embeddings.weight"] = torch.zeros(120, 32)
    safetensors.torch.save_file(tensors, folder / "adapter_model.safetensors")
    model = load_base(base, "bert")
    with pytest.raises(LaminaError, match="word_embeddings.weight' is neither LoRA nor part of the task head"):
        lamina.import_peft(folder, tmp_path / "out", base=model)
    assert CONTAINER not in model._modules


def test_import_refuses_per_module_ranks_within_a_layer(tmp_path):
    base = base_dir(tmp_path, "bert")
    cfg = peft.LoraConfig(r=2, target_modules=["query", "value"], rank_pattern={"value": 4}, task_type="SEQ_CLS")
    peft.get_peft_model(load_base(base, "bert"), cfg).save_pretrained(tmp_path / "peft")
    with pytest.raises(LaminaError, match="layer 0: PEFT gives its modules different ranks"):
        lamina.import_peft(tmp_path / "peft", tmp_path / "out")


def test_export_without_trained_head(tmp_path):
    """PEFT's SEQ_CLS adapters always carry a head copy; a design that keeps the base head exports with
    no task type (PEFT then uses the base head as is) and imports back onto the declared architecture."""
    design = {"groups": [{"layers": "0-3", "strategies": [{"lora": {"r": 2}}]}], "train_head": False}
    base, model, saved = lamina_adapter(tmp_path, "bert", design)
    expected = logits(model, "bert")
    out = lamina.export_peft(saved, tmp_path / "peft")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["task_type"] is None and config["modules_to_save"] is None
    assert torch.equal(logits(peft.PeftModel.from_pretrained(load_base(base, "bert"), out).eval(), "bert"), expected)
    back = lamina.import_peft(out, tmp_path / "back")
    fresh = load_base(base, "bert")
    lamina.load(fresh, back)
    assert torch.equal(logits(fresh, "bert"), expected)


def test_export_refuses_a_design_without_lora(tmp_path):
    _, _, saved = lamina_adapter(tmp_path, "bert", {"groups": [], "train_head": True})
    with pytest.raises(LaminaError, match="no modules PEFT can hold"):
        lamina.export_peft(saved, tmp_path / "peft")
