"""Save / load: every preset on every family round-trips to identical logits on a fresh base; only the
trained tensors are stored (prefix MLPs collapsed, file size = 4 bytes x stored params + header); bad
folders fail with one line; saves are atomic; several named adapters share one model."""

import json
import pickle
import struct
from pathlib import Path

import pytest
import safetensors.torch
import torch
from typer.testing import CliRunner

import lamina
import tiny
from lamina.errors import LaminaError
from lamina.inject import CONTAINER, adapters_of
from lamina.io import DESIGN_FILE, TENSOR_FILE

FAMILIES = ("bert", "roberta", "t5", "gpt2", "llama", "deberta-v2")
PRESETS = (
    "lora", "bitfit", "adapter-pfeiffer:bottleneck=8", "adapter-houlsby:bottleneck=8", "adapter-parallel:bottleneck=8", "prefix:mlp=16", "prompt:length=3", "ln",
    "unipelt:bottleneck=8", "unipelt-prompt:bottleneck=8,prompt_length=3", "spafit:n1=1,n2=2", "s4:budget=20%", "full",
)
NEEDS_PREFIX = ("prefix", "unipelt", "s4")



def cases():
    for family in FAMILIES:
        for preset in PRESETS:
            if family == "deberta-v2" and preset.startswith(NEEDS_PREFIX):
                continue
            yield family, preset


def train(model, family, steps=2):
    """Two AdamW steps (lr 1e-2) so every trained tensor moves (zero-init partners move on step 2)."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    before = {n: p.detach().clone() for n, p in params.items()}
    opt = torch.optim.AdamW(params.values(), lr=1e-2)
    inputs = tiny.batch(family, seed=7, pad_last=2)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        tiny.logits(model, inputs).float().pow(2).mean().backward()
        opt.step()
    model.eval()
    frozen = [n for n, p in params.items() if torch.equal(p, before[n])]
    assert not frozen, f"tensors that did not move: {frozen[:5]}"
    return model


def logits(model, family):
    with torch.no_grad():
        return tiny.logits(model, tiny.batch(family, pad_last=2))


def header_len(path: Path) -> int:
    with open(path, "rb") as handle:
        return struct.unpack("<Q", handle.read(8))[0]


@pytest.mark.parametrize("family,preset", list(cases()))
def test_round_trip(family, preset, tmp_path):
    model = tiny.model(family, seed=0)
    report = lamina.apply(model, preset)
    train(model, family)
    expected = logits(model, family)
    live_keys = sorted(model.state_dict())

    folder = lamina.save(model, tmp_path / "adapter")

    assert sorted(model.state_dict()) == live_keys, "save changed the live model (prefix MLP must stay)"
    assert torch.equal(logits(model, family), expected)
    info = json.loads((folder / DESIGN_FILE).read_text())
    path = folder / TENSOR_FILE
    stored = safetensors.torch.load_file(path)
    assert info["stored_params"] == sum(t.numel() for t in stored.values()) == report.stored
    assert all(t.dtype == torch.float32 for t in stored.values())
    assert path.stat().st_size == 8 + header_len(path) + 4 * report.stored
    assert info["dtype"] == "float32" and info["adapter_name"] == ("full" if preset == "full" else "default")
    if "mlp" in preset or preset.startswith("unipelt"):
        assert any(k.endswith("prefix.kv") for k in stored) and not any(".mlp." in k or k.endswith("embedding") and "prefix" in k for k in stored)

    fresh = tiny.model(family, seed=0)
    lamina.load(fresh, folder)
    assert torch.equal(logits(fresh, family), expected)


def test_names_are_relative_to_the_adapter_set(tmp_path):
    model = tiny.model("bert")
    lamina.apply(model, "spafit:n1=1,n2=2")
    folder = lamina.save(model, tmp_path / "a")
    keys = set(safetensors.torch.load_file(folder / TENSOR_FILE))
    assert "groups.1.lora.3.attention-self-query.A" in keys and "heads.classifier.weight" in keys
    assert not any(k.startswith(CONTAINER) for k in keys)
    assert keys == set(adapters_of(model)["default"].state_dict())
    info = json.loads((folder / DESIGN_FILE).read_text())
    for field in ("design", "lamina_version", "transformers_version", "base_model_name_or_path", "dtype", "adapter_name", "sha256"):
        assert field in info


# --- one-line errors ---------------------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    model = tiny.model("bert")
    lamina.apply(model, "lora:r=2")
    return lamina.save(model, tmp_path / "adapter")


def rewrite(folder: Path, tensors: dict) -> None:
    """Replace the tensors and fix the checksum, so the strict name/shape checks are what fails."""
    safetensors.torch.save_file(tensors, folder / TENSOR_FILE)
    info = json.loads((folder / DESIGN_FILE).read_text())
    import hashlib

    info["sha256"] = hashlib.sha256((folder / TENSOR_FILE).read_bytes()).hexdigest()
    (folder / DESIGN_FILE).write_text(json.dumps(info))


def load_error(folder) -> str:
    model = tiny.model("bert")
    with pytest.raises(LaminaError) as err:
        lamina.load(model, folder)
    assert CONTAINER not in model._modules, "a failed load must not leave an adapter behind"
    message = str(err.value)
    assert "\n" not in message
    return message


def test_corrupt_file(saved):
    data = bytearray((saved / TENSOR_FILE).read_bytes())
    data[-3] ^= 0xFF
    (saved / TENSOR_FILE).write_bytes(bytes(data))
    assert load_error(saved) == f"{saved}: checksum mismatch: adapter.safetensors is corrupt or was changed"


def test_wrong_shape(saved):
    tensors = safetensors.torch.load_file(saved / TENSOR_FILE)
    key = "groups.0.lora.1.attention-self-value.A"
    tensors[key] = torch.zeros(3, 32)
    rewrite(saved, tensors)
    message = load_error(saved)
    assert key in message and "[3, 32]" in message and "[2, 32]" in message


def test_extra_and_missing_tensor(saved):
    tensors = safetensors.torch.load_file(saved / TENSOR_FILE)
    rewrite(saved, {**tensors, "groups.0.lora.0.bogus": torch.zeros(2)})
    assert "unexpected tensor 'groups.0.lora.0.bogus'" in load_error(saved)
    tensors.pop("heads.classifier.bias")
    rewrite(saved, tensors)
    assert "tensor 'heads.classifier.bias' is missing" in load_error(saved)


def test_pickle_files_are_refused_never_unpickled(saved, monkeypatch):
    state = safetensors.torch.load_file(saved / TENSOR_FILE)
    torch.save(state, saved / "adapter.bin")
    (saved / TENSOR_FILE).unlink()

    def boom(*_a, **_k):
        raise AssertionError("unpickled")

    monkeypatch.setattr(torch, "load", boom)
    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    assert "refusing to load adapter.bin" in load_error(saved)
    assert "refusing to load adapter.bin" in load_error(saved / "adapter.bin")


def test_missing_design(saved, tmp_path):
    (saved / DESIGN_FILE).unlink()
    assert "no design.json" in load_error(saved)
    assert "not found" in load_error(tmp_path / "nowhere")
    (saved / DESIGN_FILE).write_text("{not json")
    assert "not valid JSON" in load_error(saved)


def test_cli_errors_exit_2(saved, tmp_path):
    from lamina.cli import app

    (saved / TENSOR_FILE).write_bytes(b"garbage")
    result = CliRunner().invoke(app, ["merge", "--adapter", str(saved), "--output", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {saved}: checksum mismatch: adapter.safetensors is corrupt or was changed"
    result = CliRunner().invoke(app, ["export-peft", "--adapter", str(tmp_path / "missing"), "--output", str(tmp_path / "p")])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "p").exists()


def test_other_family_is_refused(saved):
    with pytest.raises(LaminaError, match="trained on a 'bert' model"):
        lamina.load(tiny.model("llama"), saved)


# --- atomic writes -----------------------------------------------------------------------------------
def failing_write(tensors, filename, metadata=None):
    Path(filename).write_bytes(b"half a file")
    raise OSError("disk full")


def test_failed_save_leaves_nothing(tmp_path, monkeypatch):
    model = tiny.model("bert")
    lamina.apply(model, "lora:r=2")
    monkeypatch.setattr(safetensors.torch, "save_file", failing_write)
    with pytest.raises(OSError, match="disk full"):
        lamina.save(model, tmp_path / "adapter")
    assert list(tmp_path.iterdir()) == []


def test_failed_save_keeps_the_previous_folder(tmp_path, monkeypatch):
    model = tiny.model("bert")
    lamina.apply(model, "lora:r=2")
    folder = lamina.save(model, tmp_path / "adapter")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    train(model, "bert")
    monkeypatch.setattr(safetensors.torch, "save_file", failing_write)
    with pytest.raises(OSError):
        lamina.save(model, folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]
    monkeypatch.undo()
    lamina.save(model, folder)  # overwriting works and stays loadable
    fresh = tiny.model("bert")
    lamina.load(fresh, folder)
    assert torch.equal(logits(fresh, "bert"), logits(model, "bert"))


# --- several named adapters on one model -------------------------------------------------------------
def hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_two_named_adapters(family, tmp_path):
    saved, expected = {}, {}
    for tag, preset in (("a", "unipelt-prompt:prompt_length=3"), ("b", "spafit:n1=1,n2=2")):
        model = tiny.model(family)
        lamina.apply(model, preset)
        train(model, family)
        expected[tag] = logits(model, family)
        saved[tag] = lamina.save(model, tmp_path / tag)

    model = tiny.model(family)
    base = logits(model, family)
    lamina.load(model, saved["a"], name="a")
    hooks_after_a = hook_count(model)
    lamina.load(model, saved["b"], name="b")
    hooks_after_b = hook_count(model)
    assert torch.equal(logits(model, family), expected["b"])  # the last loaded is active
    lamina.set_active(model, "a")
    assert torch.equal(logits(model, family), expected["a"])
    lamina.set_active(model, None)
    assert torch.equal(logits(model, family), base)
    assert lamina.trainable_names(model) == []
    with pytest.raises(LaminaError, match="already on this model"):
        lamina.load(model, saved["a"], name="a")

    lamina.delete_adapter(model, "a")
    assert not any(k.startswith(f"{CONTAINER}.a.") for k in model.state_dict())
    assert hook_count(model) == hooks_after_b - (hooks_after_a - 1)  # a's hooks gone, b's and the entry hook kept
    lamina.set_active(model, "b")
    assert torch.equal(logits(model, family), expected["b"])
    with pytest.raises(LaminaError):
        lamina.set_active(model, "a")
    lamina.delete_adapter(model, "b")
    assert CONTAINER not in model._modules and not any("lamina" in k for k in model.state_dict())
    assert hook_count(model) == 1  # only the per-model entry hook that counts forwards
    assert not any("_lamina_config" in m.__dict__ for m in model.modules())  # prefix attention restored
    assert torch.equal(logits(model, family), base)


def test_save_picks_the_adapter(tmp_path):
    model = tiny.model("bert")
    lamina.apply(model, "lora:r=2", name="x")
    lamina.apply(model, "bitfit", name="y")
    assert json.loads((lamina.save(model, tmp_path / "active") / DESIGN_FILE).read_text())["adapter_name"] == "y"
    assert json.loads((lamina.save(model, tmp_path / "x", name="x") / DESIGN_FILE).read_text())["adapter_name"] == "x"
    lamina.set_active(model, None)
    with pytest.raises(LaminaError, match="none is active"):
        lamina.save(model, tmp_path / "none")
    with pytest.raises(LaminaError, match="no lamina adapter"):
        lamina.save(tiny.model("bert"), tmp_path / "plain")
