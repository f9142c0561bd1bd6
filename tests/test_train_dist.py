"""`accelerate launch -m lamina.cli train ...` with 2 CPU processes (DDP over gloo) on a tiny random model.

Note on the launcher flags: in accelerate 1.x `accelerate launch --cpu --num_processes 2` starts ONE
process (its "simple launcher"; multi-CPU needs an MPI hostfile). Two real processes come from
`--multi_gpu --num_processes 2`, which runs torchrun; with no GPU visible (CUDA_VISIBLE_DEVICES="")
each process trains on the CPU and lamina picks the gloo backend.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from test_train import make_model_dir, subprocess_env, write_sst2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accelerate() -> list[str]:
    exe = Path(sys.executable).with_name("accelerate")
    return [str(exe)] if exe.is_file() else [shutil.which("accelerate") or "accelerate"]


def test_two_process_cpu_run(tmp_path):
    model = make_model_dir(tmp_path)
    data = write_sst2(tmp_path, n_train=64, n_dev=16)
    out = tmp_path / "run"
    cmd = [*_accelerate(), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           "-m", "lamina.cli", "train", "--model", model, "--task", "sst2", "--design", "lora:r=4",
           "--data-dir", str(data), "--output", str(out), "--epochs", "2", "--batch-size", "8",
           "--max-length", "32", "--lr", "1e-2", "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path,
                          env=subprocess_env(CUDA_VISIBLE_DEVICES="", ACCELERATE_USE_CPU="true"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["options"]["world_size"] == 2
    assert results["global_step"] == 2 * 64 // (8 * 2)  # each process sees half of every epoch
    assert [e["epoch"] for e in results["evaluations"]] == [1.0, 2.0]
    assert 0.0 <= results["best"]["accuracy"] <= 1.0
    assert (out / "adapter.safetensors").is_file() and not (out / "checkpoints").exists()
    assert proc.stdout.count("best accuracy") == 1  # only the main process reports
