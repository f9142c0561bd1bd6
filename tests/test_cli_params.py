"""`lamina params`: table/JSON from a config alone; bad input -> one line, exit 2."""

import json
import subprocess
import sys

import transformers as T
from typer.testing import CliRunner

from lamina.cli import app

runner = CliRunner()


def test_params_table_and_json(tmp_path):
    T.BertConfig().to_json_file(tmp_path / "config.json")
    result = runner.invoke(app, ["params", "--model", str(tmp_path / "config.json"), "--design", "lora:r=8,targets=q+v"])
    assert result.exit_code == 0, result.output
    assert "294,912" in result.output and "with head" in result.output
    result = runner.invoke(app, ["params", "--model", str(tmp_path), "--design", "unipelt", "--json"])
    data = json.loads(result.output)
    by_method = {r["method"]: r for r in data["rows"]}
    assert by_method["prefix"]["stored"] == 184_320 + 12 * 769
    assert data["base_params"] == 109_483_778


def test_params_70b_config_on_meta(tmp_path):
    T.LlamaConfig(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
                  num_key_value_heads=8, vocab_size=128256).to_json_file(tmp_path / "config.json")
    result = runner.invoke(app, ["params", "-m", str(tmp_path / "config.json"), "-d", "spafit:n1=40,n2=60", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["base_params"] > 69_000_000_000


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "lamina.cli", *args], capture_output=True, text=True)


def test_errors_are_one_line_exit_2(tmp_path):
    T.BertConfig(num_hidden_layers=4).to_json_file(tmp_path / "bert.json")
    (tmp_path / "distil.json").write_text(json.dumps({"model_type": "distilbert"}))
    (tmp_path / "broken.json").write_text("{")
    cases = [
        (["--design", "spafit:n1=3,n2=2"], "bert.json", "n1"),
        (["--design", "lora:targets=q+zz"], "bert.json", "unknown target 'zz'"),
        (["--design", "bogus"], "bert.json", "unknown preset 'bogus'"),
        (["--design", "missing.yaml"], "bert.json", "design file not found"),
        (["--design", "lora"], "distil.json", "unsupported model type 'distilbert'"),
        (["--design", "lora"], "broken.json", "not valid JSON"),
        (["--design", "lora"], "nothere.json", "config file not found"),
    ]
    for extra, config, message in cases:
        result = runner.invoke(app, ["params", "--model", str(tmp_path / config), *extra])
        assert result.exit_code == 2, (extra, result.output)
        assert message in result.output
        assert "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1
