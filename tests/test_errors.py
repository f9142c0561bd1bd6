"""The CLI's error boundary: user errors are one line and exit 2 (a traceback only with --debug or
LAMINA_DEBUG=1); internal errors exit 1 with a "this is a bug" line and the traceback; click's usage errors
are one line too. Also: the checks that map library failures (configs, files) to one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import transformers as T
from typer.testing import CliRunner

from lamina.cli import app, boundary
from lamina.errors import LaminaError

runner = CliRunner()


@pytest.fixture
def config(tmp_path):
    T.BertConfig(num_hidden_layers=4, hidden_size=32, num_attention_heads=4, intermediate_size=37,
                 vocab_size=50).to_json_file(tmp_path / "config.json")
    return tmp_path / "config.json"


def test_user_error_is_one_line_exit_2(config):
    result = runner.invoke(app, ["params", "--model", str(config), "--design", "lora:r=0"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("error: ") and "r" in result.stderr and "Traceback" not in result.output


def test_debug_flag_and_environment_show_the_traceback(config, monkeypatch):
    argv = ["params", "--model", str(config), "--design", "lora:targets=zz"]
    for extra, env in (([], {"LAMINA_DEBUG": "1"}), (["--debug"], {})):
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        result = runner.invoke(app, [*extra, *argv])
        assert result.exit_code == 2
        assert "Traceback" in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("error: ") and "zz" in result.stderr
    monkeypatch.delenv("LAMINA_DEBUG")
    assert "Traceback" not in runner.invoke(app, argv).stderr  # --debug does not stick to the next command


def test_internal_error_is_visibly_a_bug(config, monkeypatch):
    import lamina.cli.params as params_cli

    def broken(*_a, **_k):
        return {}["no such key"]

    monkeypatch.setattr(params_cli, "head_model", broken)
    result = runner.invoke(app, ["params", "--model", str(config), "--design", "lora"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("internal error (this is a bug): KeyError")
    assert "Traceback" in result.stderr and "broken" in result.stderr


@pytest.mark.parametrize("argv, words", [
    (["params", "--model", "x.json"], "Missing option '--design'"),
    (["params", "--model", "x.json", "--design", "lora", "--num-labels", "two"], "'--num-labels'"),
    (["trian"], "No such command 'trian'"),
    (["train", "--task", "sst2", "--epochs", "many"], "'--epochs'"),
])
def test_usage_errors_are_one_line(argv, words):
    result = runner.invoke(app, argv)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: ") and words in result.stderr and "--help" in result.stderr


def test_describe_maps_user_errors_and_leaves_bugs():
    from pydantic import BaseModel, ValidationError

    class M(BaseModel):
        r: int

    with pytest.raises(ValidationError) as err:
        M(r="x")
    assert boundary.describe(err.value).startswith("invalid m: r: ")
    assert boundary.describe(LaminaError("a\nb")) == "a b"
    assert "no/such" in boundary.describe(FileNotFoundError(2, "No such file or directory", "no/such"))
    assert boundary.describe(KeyError("x")) is None and boundary.describe(TypeError("x")) is None


def test_a_real_process_prints_exactly_one_line(tmp_path, config):
    """Outside the test runner (warnings, logging and all): stderr is the one line."""
    design = tmp_path / "d.yaml"
    design.write_bytes(b"groups: [{layers: 0-1, strategies: [bitfit]}]  # caf\xe9\n")
    proc = subprocess.run([sys.executable, "-m", "lamina.cli", "params", "--model", str(config), "--design", str(design)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {design}:1: not UTF-8 text (byte 0xe9 at offset 52); "
                                                "save the design file as UTF-8"]


@pytest.mark.parametrize("changes, words", [
    (dict(model_type="zzz"), "unsupported model type 'zzz' (lamina supports: "),
    (dict(hidden_size="big"), "'hidden_size' must be a positive integer, got \"big\""),
    (dict(hidden_size=30), "hidden_size 30 is not divisible by num_attention_heads 4"),
    (dict(num_hidden_layers=True), "'num_hidden_layers' must be a positive integer, got true"),
])
def test_config_checks_name_the_field(config, changes, words):
    data = json.loads(config.read_text())
    config.write_text(json.dumps({**data, **changes}))
    result = runner.invoke(app, ["params", "--model", str(config), "--design", "lora"])
    assert result.exit_code == 2 and words in result.stderr and len(result.stderr) < 400
