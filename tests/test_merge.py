"""Merging: merged == unmerged logits per family, unmerge restores the base bit for bit, and
`lamina merge` writes a plain Hugging Face folder that transformers loads without lamina (trained
head in the real head, tokenizer copied), keeping unmergeable parts as a reduced lamina adapter."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch
from typer.testing import CliRunner

import lamina
import tiny
from lamina.cli import app
from lamina.inject import CONTAINER, adapters_of
from lamina.io import REMAINING_DIR

FAMILIES = ("bert", "roberta", "t5", "gpt2", "llama", "deberta-v2")
AUTO = {"t5": "AutoModelForSeq2SeqLM"}  # the rest are sequence classifiers
# LoRA on attention and FFN (GPT-2: a q slice of the fused c_attn), LayerNorm tuning, BitFit, the head.
MERGEABLE = {
    "groups": [
        {"layers": "0-1", "strategies": [{"lora": {"r": 4, "alpha": 6, "targets": "q+v+o+ffn_out"}}, "ln"]},
        {"layers": "2-3", "strategies": [{"lora": {"r": 2, "targets": "ffn_in"}}, "bitfit"]},
    ]
}
NO_BIASES = ("t5", "llama")  # BitFit there adds biases the base modules do not have: not mergeable


def fully_mergeable(family):
    if family not in NO_BIASES:
        return MERGEABLE
    return {"groups": [MERGEABLE["groups"][0], {"layers": "2-3", "strategies": [{"lora": {"r": 2, "targets": "ffn_in"}}]}]}




logits = tiny.padded_logits
perturb = tiny.perturb

base_state = tiny.base_state


def restored(model, before, exact):
    """exact: bit for bit; lean (no copies kept): within float32 rounding of the subtraction."""
    now = base_state(model)
    if exact:
        return all(torch.equal(v, before[k]) for k, v in now.items())
    return all(torch.allclose(v, before[k], atol=1e-6, rtol=1e-6) for k, v in now.items())


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("family", FAMILIES)
def test_merge_equivalence(family, exact):
    model = tiny.model(family)
    before = base_state(model)
    lamina.apply(model, MERGEABLE)
    perturb(model)
    expected = logits(model, family)

    kept = lamina.merge(model, exact=exact)
    assert (kept != []) == (family in NO_BIASES)
    assert all("BitFit" in k for k in kept)
    merged = logits(model, family)
    assert torch.allclose(merged, expected, atol=1e-5, rtol=0)
    assert any(not torch.equal(v, before[k]) for k, v in base_state(model).items()), "nothing was folded"

    lamina.unmerge(model)
    assert restored(model, before, exact)
    assert torch.allclose(logits(model, family), expected, atol=0 if exact else 1e-5, rtol=0)


def test_lean_merge_keeps_no_copies_and_refuses_a_restore_outside_the_tolerance():
    from lamina.errors import LaminaError

    model = tiny.model("bert")
    lamina.apply(model, "lora:r=2")
    perturb(model)
    lamina.merge(model)
    lora = adapters_of(model)["default"].groups["0"]["lora"]
    assert all(f.original is None for f in lora.__dict__["_folds"].values())
    with torch.no_grad():  # the adapter changes while merged: subtracting it cannot restore the base
        for p in lora.parameters():
            p.mul_(3.0)
    with pytest.raises(LaminaError, match="merge with exact=True to restore bit for bit"):
        lamina.unmerge(model)


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_partial_merge_equivalence(family):
    """s4 puts an adapter and BitFit on the same FFN output: deltas attach before inserts, so folding
    BitFit into the bias does not change what the adapter sees."""
    model = tiny.model(family)
    lamina.apply(model, "s4:budget=20%")
    perturb(model)
    expected = logits(model, family)
    kept = lamina.merge(model)
    assert any("adapter" in k for k in kept) and any("prefix" in k for k in kept)
    assert torch.allclose(logits(model, family), expected, atol=1e-5, rtol=0)


# --- lamina merge: plain Hugging Face export ---------------------------------------------------------
def write_tokenizer(folder: Path) -> None:
    from transformers import BertTokenizer

    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"]) + "\n")
    BertTokenizer(vocab_file=str(vocab)).save_pretrained(folder)


def trained_adapter(root: Path, family: str, design, with_tokenizer=False):
    """A base model saved in a folder, loaded from there, trained (perturbed), saved as an adapter."""
    base = root / "base"
    tiny.model(family).save_pretrained(base)
    if with_tokenizer:
        write_tokenizer(base)
    model = type(tiny.model(family)).from_pretrained(base).eval()
    lamina.apply(model, design)
    perturb(model)
    return lamina.save(model, root / "adapter"), logits(model, family), model


PLAIN = r"""
import json, sys
import safetensors.torch, torch, transformers
torch.set_num_threads(1)
out = {}
for job in json.loads(sys.argv[1]):
    model = getattr(transformers, job["auto"]).from_pretrained(job["dir"]).eval()
    inputs = safetensors.torch.load_file(job["inputs"])
    with torch.no_grad():
        out[job["dir"]] = model(**inputs).logits.contiguous()
assert not any(name == "lamina" or name.startswith("lamina.") for name in sys.modules), "lamina was imported"
safetensors.torch.save_file(out, sys.argv[2])
"""


@pytest.fixture(scope="module")
def merged_exports(tmp_path_factory):
    """Every family: adapter -> `lamina merge` -> plain folder; the logits transformers computes from
    those folders in ONE subprocess that never imports lamina."""
    root = tmp_path_factory.mktemp("merged")
    jobs, expected = [], {}
    for family in FAMILIES:
        folder, want, _ = trained_adapter(root / family, family, fully_mergeable(family), with_tokenizer=family == "bert")
        out = root / family / "merged"
        result = CliRunner().invoke(app, ["merge", "--adapter", str(folder), "--output", str(out)])
        assert result.exit_code == 0, result.output
        inputs = root / family / "inputs.safetensors"
        safetensors.torch.save_file(tiny.batch(family, pad_last=2), inputs)
        jobs.append({"auto": AUTO.get(family, "AutoModelForSequenceClassification"), "dir": str(out), "inputs": str(inputs)})
        expected[family] = (out, want, result.output)
    target = root / "logits.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", PLAIN, json.dumps(jobs), str(target)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = safetensors.torch.load_file(target)
    return {family: (out, want, got[str(out)], output) for family, (out, want, output) in expected.items()}


@pytest.mark.parametrize("family", FAMILIES)
def test_merged_export_loads_in_plain_transformers(family, merged_exports):
    out, expected, plain, output = merged_exports[family]
    assert torch.allclose(plain, expected, atol=1e-5, rtol=0)
    files = {p.name for p in out.iterdir()}
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".pt")) for f in files)
    keys = set(safetensors.torch.load_file(out / "model.safetensors"))
    assert not any("lamina" in k for k in keys)
    assert "lamina" not in (out / "config.json").read_text()
    assert REMAINING_DIR not in files
    if family != "t5":
        assert "merged: task head" in output


def test_merged_export_copies_the_tokenizer(merged_exports):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(merged_exports["bert"][0])
    assert tokenizer("hello world")["input_ids"][0] == 2  # [CLS]
    assert not (merged_exports["gpt2"][0] / "tokenizer_config.json").exists()  # none next to that base


def test_bitfit_on_biasless_modules_is_kept(tmp_path):
    from transformers import AutoModelForSequenceClassification

    folder, expected, _ = trained_adapter(tmp_path, "llama", MERGEABLE)
    result = CliRunner().invoke(app, ["merge", "--adapter", str(folder), "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "kept: group 1 (layers 2-3) bitfit: BitFit on modules that have no bias of their own" in result.output
    out = tmp_path / "out"
    assert json.loads((out / REMAINING_DIR / "design.json").read_text())["base_model_name_or_path"] == str(out.resolve())
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    report = lamina.load(model, out / REMAINING_DIR)
    assert [r.method for r in report.rows] == ["bitfit"]
    assert torch.allclose(logits(model, "llama"), expected, atol=1e-5, rtol=0)


def test_partial_merge_and_strict(tmp_path):
    folder, expected, _ = trained_adapter(tmp_path, "bert", "unipelt-prompt:bottleneck=8,prefix_mlp=16,prompt_length=3")
    strict = CliRunner().invoke(app, ["merge", "--adapter", str(folder), "--output", str(tmp_path / "strict"), "--strict"])
    assert strict.exit_code == 2 and len([l for l in strict.output.splitlines() if "error" in l]) == 1
    for part in ("adapter", "prefix", "gated LoRA", "prompt"):
        assert part in strict.output
    assert not (tmp_path / "strict").exists()

    result = CliRunner().invoke(app, ["merge", "--adapter", str(folder), "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    report = lamina.load(model, tmp_path / "out" / REMAINING_DIR)
    assert {r.method for r in report.rows} == {"adapter", "prefix", "lora", "prompt"}  # head went into the model
    assert torch.allclose(logits(model, "bert"), expected, atol=1e-5, rtol=0)
    stored = adapters_of(model)["default"]
    assert not hasattr(stored.groups["0"]["prefix"], "mlp")  # stored keys/values only


def test_merge_full_and_base_override(tmp_path):
    model = tiny.model("gpt2")
    lamina.apply(model, "full")
    perturb(model)
    expected = logits(model, "gpt2")
    folder = lamina.save(model, tmp_path / "adapter")
    missing = CliRunner().invoke(app, ["merge", "--adapter", str(folder), "--output", str(tmp_path / "x")])
    assert missing.exit_code == 2 and "pass --base" in missing.output
    tiny.model("gpt2").save_pretrained(tmp_path / "base")
    result = CliRunner().invoke(app, ["merge", "--adapter", str(folder), "--output", str(tmp_path / "out"), "--base", str(tmp_path / "base")])
    assert result.exit_code == 0, result.output
    from transformers import AutoModelForSequenceClassification

    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    assert torch.equal(logits(merged, "gpt2"), expected)
    again = CliRunner().invoke(app, ["merge", "--adapter", str(folder), "--output", str(tmp_path / "out"), "--base", str(tmp_path / "base")])
    assert again.exit_code == 2 and "already exists and is not empty" in again.output
