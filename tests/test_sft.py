"""Instruction tuning of causal LMs: prompt/response and chat files, loss on the response only, chat
templates, evaluation by loss and generations, predict. Tiny random GPT-2 / Llama (tests/tiny_lm.py)."""

from __future__ import annotations

import json

import pytest

import tiny
import tiny_lm
from lamina.tasks import TaskError, TaskOptions, get_kind

FAST = dict(batch_size=8, max_length=32, progress=False, logging_steps=4)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("sft")


def encode(examples, family="llama", chat_template=None, max_length=64, train=True):
    kind = get_kind("sft")
    options = TaskOptions(max_length=max_length, model_config=tiny.config(family))
    tok = tiny_lm.tokenizer(family, chat_template)
    return kind.encode(kind.placeholder_spec(), examples, tok, options, train), tok, options


def words(tok, ids):
    return tok.decode([i for i in ids if i != -100])


def test_loss_covers_the_response_and_the_end_of_sequence_only():
    ex = {"id": "a", "prompt": "question: one two answer:", "response": " one two"}
    (f,), tok, options = encode([ex], train=False)
    bos, eos = tok.bos_token_id, tok.eos_token_id
    assert f["input_ids"][0] == bos and f["input_ids"][-1] == eos  # Llama-style tokenizer: <s> in front
    trained = [t for t in f["labels"] if t != -100]
    assert words(tok, trained[:-1]) == " one two" and trained[-1] == eos
    assert f["labels"][:len(f["prompt_ids"])] == [-100] * len(f["prompt_ids"])
    assert words(tok, f["prompt_ids"][1:]) == "question: one two answer:" and f["reference"] == " one two"
    (g,), tok, _ = encode([ex], family="gpt2")  # GPT-2 puts nothing in front
    assert g["input_ids"][0] != tok.bos_token_id and g["input_ids"][-1] == tok.eos_token_id
    assert options.max_new_tokens is None and encode([ex])[2].max_new_tokens == 3  # "one two" + </s>


def test_chat_messages_use_the_template_and_train_every_assistant_turn():
    ex = {"id": "c", "messages": [{"role": "system", "content": "be good"}, {"role": "user", "content": "one"},
                                  {"role": "assistant", "content": "two"}, {"role": "user", "content": "three"},
                                  {"role": "assistant", "content": "four five"}]}
    (f,), tok, _ = encode([ex], chat_template=tiny_lm.CHAT_TEMPLATE, train=False)
    rendered = tok.apply_chat_template(ex["messages"], tokenize=False)
    assert rendered == "system: be good user: one assistant: two user: three assistant: four five "
    assert words(tok, f["input_ids"][1:-1]) == rendered and f["input_ids"][-1] == tok.eos_token_id
    trained = [t for t in f["labels"] if t != -100]
    assert words(tok, trained[:-1]) == "two four five " and trained[-1] == tok.eos_token_id
    assert words(tok, f["prompt_ids"][1:]) == "system: be good user: one assistant: two user: three assistant: "
    assert f["reference"] == "four five"
    (plain,), tok, _ = encode([ex], train=False)  # no template: "role: content" lines
    assert words(tok, plain["prompt_ids"][1:]).endswith("user: three\nassistant: ")


def test_gpt2_prompt_response_trains_evaluates_and_predicts(root, tmp_path):
    from lamina.evaluate import evaluate_adapter, predict_file
    from lamina.train import train

    model = tiny_lm.lm_dir(root, "gpt2")
    data = tiny_lm.write_sft(root / "qa")
    results = train(model, "sft", "lora:r=4,targets=q+k+v+o", data, tmp_path / "run", epochs=3, lr=5e-2, **FAST)
    assert results["kind"] == "sft" and results["main_metric"] == "rougeL"
    assert {"loss", "perplexity", "exact_match", "rougeL"} <= results["best"].keys()
    losses = [e["loss"] for e in results["evaluations"]]
    assert losses[-1] < losses[0]
    again = evaluate_adapter(tmp_path / "run", "sft")
    assert again["metrics"]["rougeL"] == pytest.approx(results["best"]["rougeL"])
    assert again["metrics"]["perplexity"] == pytest.approx(results["best"]["perplexity"], rel=1e-5)
    inputs = tiny_lm.write_jsonl(tmp_path / "in.jsonl", [
        {"prompt": "question: one good film answer", "id": "p"},
        {"messages": [{"role": "user", "content": "two bad film"}]}])
    rows = predict_file(tmp_path / "run", inputs)
    assert [r["id"] for r in rows] == ["p", "1"] and all(isinstance(r["generation"], str) for r in rows)


def test_llama_chat_files_train(root, tmp_path):
    from lamina.train import train

    model = tiny_lm.lm_dir(root, "llama", chat_template=tiny_lm.CHAT_TEMPLATE)
    data = tiny_lm.write_sft(root / "chat", n_train=16, n_dev=4, chat=True)
    results = train(model, "sft", "unipelt", data, tmp_path / "run", epochs=1, **FAST)
    assert results["kind"] == "sft" and results["eval_examples"] == 4


@pytest.mark.parametrize("record, message", [
    ({"prompt": "a"}, "train.jsonl:2: missing field 'response'"),
    ({"prompt": "a", "response": "  "}, "train.jsonl:2: field 'response' is empty"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "train.jsonl:2: field 'messages': no assistant turn"),
    ({"messages": [{"role": "assistant", "content": ""}]}, "train.jsonl:2: field 'messages': assistant turn 0 is empty"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "train.jsonl:2: field 'messages': turn 0 needs a 'role'"),
    ({"messages": "hello"}, "train.jsonl:2: field 'messages' must be a non-empty list"),
    ({"messages": [{"role": "assistant", "content": "y"}], "response": "b"},
     "train.jsonl:2: a row gives both 'messages' and 'response'"),
])
def test_bad_lines_name_file_line_and_field(tmp_path, record, message):
    from lamina.tasks.sft import load_sft

    path = tiny_lm.write_jsonl(tmp_path / "train.jsonl", [{"prompt": "a", "response": "b"}, record])
    with pytest.raises(TaskError) as err:
        load_sft(path)
    assert str(err.value) == f"{path.parent}/{message}" or str(err.value).startswith(f"{path.parent}/{message}")


def test_too_long_for_the_context_or_for_max_length(tmp_path):
    ex = {"id": "x", "prompt": "one", "response": " ".join(["two"] * 70), "file": "d/train.jsonl", "line": 7}
    with pytest.raises(TaskError, match=r"^d/train.jsonl:7: field 'response': 73 tokens with the prompt, more than "
                                        r"the model's context of 64$"):
        encode([ex], family="llama", max_length=128)
    ex = {"id": "y", "prompt": " ".join(["one"] * 20), "response": "two", "file": "d/dev.jsonl", "line": 3}
    with pytest.raises(TaskError, match=r"^d/dev.jsonl:3: field 'prompt': 21 prompt tokens leave no room for the "
                                        r"response within --max-length 16$"):
        encode([ex], max_length=16)
    ex = {"id": "z", "prompt": "one", "response": " ".join(["two"] * 20)}
    (f,), _, _ = encode([ex], max_length=16)  # within the context: cut at --max-length
    assert len(f["input_ids"]) == 16 and f["labels"][-1] != -100
