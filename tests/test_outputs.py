"""Nothing overwritten: outputs never replace an input or sit inside one; an existing output folder needs
--overwrite (and must hold an earlier output of the same kind); --resume on a finished run says so and
exits 0; design.json names a local base model by its absolute path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lamina.cli import app
from lamina.errors import LaminaError
from lamina.outputs import check_output_folder, replace_folder
from test_train import make_model_dir, write_sst2

runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(model folder, GLUE root, a finished run folder) — the run trained once, 1 epoch."""
    root = tmp_path_factory.mktemp("outputs")
    model, data = make_model_dir(root), write_sst2(root, n_train=32, n_dev=8)
    out = root / "run"
    result = runner.invoke(app, train_args(model, data, out))
    assert result.exit_code == 0, result.output
    return Path(model), data, out


def train_args(model, data, out, *extra, design="bitfit"):
    return ["train", "--model", str(model), "--task", "sst2", "--design", design, "--data-dir", str(data),
            "--output", str(out), "--no-progress", "--epochs", "1", "--batch-size", "16", "--max-length", "16", *extra]


def files(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_resume_on_a_finished_run_says_so_and_changes_nothing(run):
    model, data, out = run
    before = contents(out)
    result = runner.invoke(app, train_args(model, data, out, "--resume"))
    assert result.exit_code == 0, result.output
    assert "already finished" in result.stdout and "nothing to resume" in result.stdout and "accuracy" in result.stdout
    assert contents(out) == before


def test_existing_run_folder_needs_overwrite(run, tmp_path):
    model, data, out = run
    again = tmp_path / "again"
    again.mkdir()
    for name, value in files(out).items():
        (again / name).parent.mkdir(parents=True, exist_ok=True)
        (again / name).write_bytes((out / name).read_bytes())
    result = runner.invoke(app, train_args(model, data, again))
    assert result.exit_code == 2 and "--overwrite" in result.stderr
    old = json.loads((again / "results.json").read_text())
    result = runner.invoke(app, train_args(model, data, again, "--overwrite", "--seed", "7"))
    assert result.exit_code == 0, result.output
    new = json.loads((again / "results.json").read_text())
    assert new["seed"] == 7 and old["seed"] == 42
    result = runner.invoke(app, train_args(model, data, again, "--overwrite", "--resume"))
    assert result.exit_code == 2 and "give one of them" in result.stderr


def test_overwrite_never_takes_over_an_unrelated_folder(run, tmp_path):
    model, data, _ = run
    busy = tmp_path / "photos"
    busy.mkdir()
    (busy / "holiday.jpg").write_bytes(b"\xff\xd8")
    result = runner.invoke(app, train_args(model, data, busy, "--overwrite"))
    assert result.exit_code == 2 and "does not hold a lamina run folder" in result.stderr
    assert [p.name for p in busy.iterdir()] == ["holiday.jpg"]


def test_design_json_names_a_local_base_by_its_absolute_path(run, tmp_path, monkeypatch):
    model, data, _ = run
    monkeypatch.chdir(model.parent)
    out = tmp_path / "relative"
    result = runner.invoke(app, train_args(model.name, data, out))  # the model given relative to the cwd
    assert result.exit_code == 0, result.output
    info = json.loads((out / "design.json").read_text())
    assert info["base_model_name_or_path"] == str(model.resolve())
    monkeypatch.chdir(tmp_path)  # from elsewhere, eval finds the base without --model
    result = runner.invoke(app, ["eval", "--adapter", str(out), "--task", "sst2", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output


def test_predict_never_replaces_its_input_and_overwrites_only_when_asked(run, tmp_path):
    _, _, out = run
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "good film"}\n')
    result = runner.invoke(app, ["predict", "-a", str(out), "-i", str(source), "-o", str(source)])
    assert result.exit_code == 2 and "is an input" in result.stderr
    assert source.read_text() == '{"text": "good film"}\n'
    preds = tmp_path / "preds.jsonl"
    preds.write_text("old\n")
    result = runner.invoke(app, ["predict", "-a", str(out), "-i", str(source), "-o", str(preds)])
    assert result.exit_code == 2 and preds.read_text() == "old\n"
    result = runner.invoke(app, ["predict", "-a", str(out), "-i", str(source), "-o", str(preds), "--overwrite"])
    assert result.exit_code == 0 and json.loads(preds.read_text())["id"] == "0"


def test_merge_overwrite_replaces_the_whole_folder(run, tmp_path):
    _, _, out = run
    merged = tmp_path / "merged"
    assert runner.invoke(app, ["merge", "-a", str(out), "-o", str(merged)]).exit_code == 0
    (merged / "stale-shard.safetensors").write_bytes(b"old")
    result = runner.invoke(app, ["merge", "-a", str(out), "-o", str(merged)])
    assert result.exit_code == 2 and "--overwrite" in result.stderr
    result = runner.invoke(app, ["merge", "-a", str(out), "-o", str(merged), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert (merged / "config.json").is_file() and not (merged / "stale-shard.safetensors").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary folder is left behind"


def test_export_and_import_never_mix_formats(run, tmp_path):
    model, data, out = run
    lora = tmp_path / "lora"
    assert runner.invoke(app, train_args(model, data, lora, design="lora:r=2")).exit_code == 0
    peft = tmp_path / "peft"
    assert runner.invoke(app, ["export-peft", "-a", str(lora), "-o", str(peft)]).exit_code == 0
    result = runner.invoke(app, ["export-peft", "-a", str(lora), "-o", str(lora), "--overwrite"])
    assert result.exit_code == 2 and "is an input" in result.stderr
    result = runner.invoke(app, ["export-peft", "-a", str(lora), "-o", str(out), "--overwrite"])
    assert result.exit_code == 2 and "does not hold a PEFT adapter" in result.stderr
    assert runner.invoke(app, ["export-peft", "-a", str(lora), "-o", str(peft), "--overwrite"]).exit_code == 0
    result = runner.invoke(app, ["import-peft", "-a", str(peft), "-o", str(peft / "inside")])
    assert result.exit_code == 2 and "inside the input folder" in result.stderr
    assert sorted(p.name for p in peft.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]


def test_replace_folder_restores_the_old_folder_when_the_build_fails(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("old")

    def fails(path: Path):
        path.mkdir()
        (path / "half.txt").write_text("new")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        replace_folder(target, fails)
    assert [p.name for p in target.iterdir()] == ["keep.txt"] and (target / "keep.txt").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["out"]
    replace_folder(target, lambda path: (path.mkdir(), (path / "new.txt").write_text("new")))
    assert [p.name for p in target.iterdir()] == ["new.txt"]


def test_output_rules_directly(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.tsv").write_text("x")
    for output, inputs, words in ((data, [data], "is an input"), (data / "run", [data], "inside the input folder"),
                                  (data / "train.tsv", [data / "train.tsv"], "is an input")):
        with pytest.raises(LaminaError, match=words):
            check_output_folder(output, "run", inputs=inputs)
    assert check_output_folder(tmp_path / "new", "run", inputs=[data]) == (tmp_path / "new").resolve()
    assert not (tmp_path / "new").exists()


def test_resume_skips_a_checkpoint_whose_trainer_state_is_cut_short(run, tmp_path):
    model, data, _ = run
    out = tmp_path / "killed"
    steps = ["--eval-steps", "1", "--max-steps", "3", "--keep-checkpoints"]
    assert runner.invoke(app, train_args(model, data, out, *steps)).exit_code == 0
    (out / "results.json").unlink()  # as if killed before the end
    checkpoints = sorted((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    last = checkpoints[-1] / "trainer_state.json"
    last.write_text(last.read_text()[:40])  # cut short
    result = runner.invoke(app, train_args(model, data, out, *steps, "--resume", "--json"))
    assert result.exit_code == 0, result.output
    results = json.loads(result.stdout)
    assert Path(results["resumed_from"]).name == checkpoints[-2].name
    assert results["global_step"] == 3


class _Trap:
    """Unpickling it would create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("state", ["optimizer.pt", "scheduler.pt", "rng_state.pth"])
def test_resume_from_a_checkpoint_holding_pickles_is_one_line(run, tmp_path, state):
    """torch's weights_only loader refuses a pickled Trainer state (rng_state.pth with the Trainer's own
    allow-list): a user error naming the checkpoint, never an internal one, nothing unpickled, and the run's
    log untouched (the check comes before the log opens)."""
    import pickle

    model, data, _ = run
    out, marker = tmp_path / "killed", tmp_path / "PWNED"
    steps = ["--eval-steps", "1", "--max-steps", "2", "--keep-checkpoints"]
    assert runner.invoke(app, train_args(model, data, out, *steps)).exit_code == 0
    (out / "results.json").unlink()  # as if killed before the end
    for path in (out / "checkpoints").glob(f"checkpoint-*/{state}"):
        path.write_bytes(pickle.dumps(_Trap(marker)))
    log = (out / "train.log").read_bytes()
    result = runner.invoke(app, train_args(model, data, out, *steps, "--resume"))
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.output[-2000:]
    assert lines == [lines[-1]] and lines[-1].startswith("error: "), lines
    assert f"checkpoint-2: {state} holds pickled objects" in lines[-1] and "without --resume" in lines[-1]
    assert "Traceback" not in result.output and not marker.exists()
    assert (out / "train.log").read_bytes() == log  # refused before the run writes anything


STEPS = ["--eval-steps", "1", "--max-steps", "2", "--keep-checkpoints"]


def killed_run(run, tmp_path, design: str) -> Path:
    """A LoRA run with its checkpoints, as if killed before the end (no results.json)."""
    model, data, _ = run
    out = tmp_path / "killed"
    assert runner.invoke(app, train_args(model, data, out, *STEPS, design=design)).exit_code == 0
    (out / "results.json").unlink()
    return out


def contents(folder: Path) -> dict:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_resume_from_a_checkpoint_holding_nan_is_refused_before_anything_is_written(run, tmp_path):
    """A NaN in the checkpoint's adapter (a diverged step, a damaged file) would train on silently."""
    from safetensors.torch import load_file, save_file

    from lamina import io as lamina_io

    out = killed_run(run, tmp_path, "lora:r=2")
    ckpt = out / "checkpoints" / "checkpoint-2"
    tensors = load_file(str(ckpt / "adapter.safetensors"))
    key = sorted(k for k in tensors if k.endswith(".A"))[0]
    tensors[key][0, 0] = float("nan")
    save_file(tensors, str(ckpt / "adapter.safetensors"))
    info = json.loads((ckpt / "design.json").read_text())  # re-signed: the file is intact, its values are not
    info["sha256"] = lamina_io._sha256(ckpt / "adapter.safetensors")
    (ckpt / "design.json").write_text(json.dumps(info))
    before = contents(out)
    result = runner.invoke(app, train_args(*run[:2], out, *STEPS, "--resume", design="lora:r=2"))
    assert result.exit_code == 2 and f"tensor '{key}' holds 1 NaN" in result.stderr, result.output[-1000:]
    assert contents(out) == before


def test_resume_from_a_checkpoint_whose_design_json_was_edited_is_refused(run, tmp_path):
    """The tensors fit the command's design (r=2) but the checkpoint's design.json says r=8: which one is true
    is not lamina's to guess (found by the fifth outside corpus)."""
    import json as _json

    out = killed_run(run, tmp_path, "lora:r=2")
    for info_path in (out / "checkpoints").glob("checkpoint-*/design.json"):
        info = _json.loads(info_path.read_text())
        for group in info["design"]["groups"]:
            for strategy in group["strategies"]:
                strategy["r"] = 8
        info_path.write_text(_json.dumps(info))
    before = contents(out)
    result = runner.invoke(app, train_args(*run[:2], out, *STEPS, "--resume", design="lora:r=2"))
    assert result.exit_code == 2 and "differs from this run's" in result.stderr, result.stderr
    assert contents(out) == before


def test_resume_through_a_link_into_another_run_is_refused(run, tmp_path):
    """`checkpoints` linked to another run's: resuming wrote new checkpoints into that run (sixth outside
    corpus). A link into another lamina output is refused; nothing is written on either side."""
    import shutil

    other = killed_run(run, tmp_path, "lora:r=2")
    out = tmp_path / "linked"
    shutil.copytree(other, out)
    shutil.rmtree(out / "checkpoints")
    (out / "checkpoints").symlink_to(other / "checkpoints")
    before, before_other = contents(out), contents(other)
    result = runner.invoke(app, train_args(*run[:2], out, *STEPS, "--resume", design="lora:r=2"))
    assert result.exit_code == 2 and "links into another lamina output" in result.stderr, result.stderr
    assert contents(out) == before and contents(other) == before_other


def test_resume_with_another_design_is_refused_before_anything_is_written(run, tmp_path):
    out = killed_run(run, tmp_path, "lora:r=2")
    before = contents(out)
    result = runner.invoke(app, train_args(*run[:2], out, *STEPS, "--resume", design="lora:r=4"))
    assert result.exit_code == 2 and "has shape [2," in result.stderr and "the model needs [4," in result.stderr
    assert contents(out) == before
