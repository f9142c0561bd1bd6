"""Every preset while generating, on tiny random T5, BART, GPT-2 and Llama: the key/value cache changes
nothing (greedy and beam search), a merge changes nothing, a saved adapter reloads to the same
generations, and a tiny model overfits 32 examples (the loss falls well below its start)."""

from __future__ import annotations

import pytest
import torch

import lamina
import tiny_lm
from lamina import merge
from lamina.presets import PRESETS

# s4's default budget (0.5 %) is below its smallest design on these tiny models
DESIGNS = sorted("s4:budget=5000" if p == "s4" else p for p in PRESETS)
FAMILIES = ("t5", "bart", "gpt2", "llama")
VOCAB = 120


def generate(model, inputs, **kw):
    out = model.generate(**inputs, max_new_tokens=5, do_sample=False, pad_token_id=0, output_scores=True,
                         return_dict_in_generate=True, **kw)
    return out.sequences, torch.stack(out.scores)


def prompts(family):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, VOCAB, (3, 7), generator=g)
    mask = torch.ones_like(ids)
    if family in tiny_lm.DECODER_ONLY:  # generation pads on the left
        ids[1, :3], mask[1, :3] = 0, 0
    else:
        ids[1, -3:], mask[1, -3:] = 0, 0
    return {"input_ids": ids, "attention_mask": mask}


def same(a, b):
    assert torch.equal(a[0], b[0])
    torch.testing.assert_close(a[1], b[1], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("design", DESIGNS)
def test_cache_merge_and_reload_change_no_generation(family, design, tmp_path):
    model = tiny_lm.lm(family, vocab_size=VOCAB)
    lamina.apply(model, design)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():  # away from the zero-initialised start, so every part acts
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.3)
    inputs = prompts(family)
    cached = generate(model, inputs)
    same(cached, generate(model, inputs, use_cache=False))
    same(generate(model, inputs, num_beams=3), generate(model, inputs, num_beams=3, use_cache=False))

    lamina.save(model, tmp_path / "adapter")
    fresh = tiny_lm.lm(family, vocab_size=VOCAB)
    if design == "full":  # a full fine-tune is stored whole: load it into an untouched model
        fresh = tiny_lm.lm(family, seed=5, vocab_size=VOCAB)
    lamina.load(fresh, tmp_path / "adapter")
    same(cached, generate(fresh.eval(), inputs))

    kept = merge(model)  # whatever cannot merge keeps running as hooks
    same(cached, generate(model, inputs))
    if not kept:
        same(cached, generate(model, inputs, use_cache=False))


def overfit_family(index: int, design: str) -> str:
    """Each preset trains once, the families taking turns. Prompt tuning alone goes to a decoder-only
    model: on T5 the soft tokens are cut from the encoder output, so they reach the decoder only through
    the encoder's self-attention (the loss falls about a quarter in 30 steps, not "well below")."""
    family = ("gpt2", "llama", "t5")[index % 3]
    return "gpt2" if design == "prompt" and family == "t5" else family


@pytest.mark.parametrize("index, design", list(enumerate(DESIGNS)))
def test_a_tiny_model_overfits_32_examples(index, design, tmp_path):
    from lamina.tasks import TaskOptions, get_kind

    family = overfit_family(index, design)
    kind = get_kind("sft" if family in tiny_lm.DECODER_ONLY else "seq2seq")
    data = (tiny_lm.write_sft if kind.name == "sft" else tiny_lm.write_seq2seq)(tmp_path / "data", n_train=32)
    spec = kind.spec_from_data(data)
    examples, _ = kind.load_split(spec, data, "train")
    tok = tiny_lm.tokenizer(family)
    model = tiny_lm.lm(family).train()
    lamina.apply(model, design)
    features = kind.encode(spec, examples, tok, TaskOptions(max_length=64, model_config=model.config), train=True)
    batch = kind.collator(tok, model)(kind.model_inputs(features))
    assert len(examples) == 32 and int((batch["labels"] != -100).sum()) > 32
    lr = 5e-3 if design == "full" else 2e-1 if design == "prompt" else 5e-2
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    with torch.no_grad():
        start = float(model.eval()(**batch).loss)
    model.train()
    for _ in range(30):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        end = float(model.eval()(**batch).loss)
    assert end < 0.7 * start, f"{design} on {family}: loss {start:.3f} -> {end:.3f}"


@pytest.mark.parametrize("family", ["gpt2", "llama", "t5"])
def test_gated_designs_in_a_decoder_never_read_later_tokens(family):
    """UniPELT gates in decoder stacks are causal: changing the last token changes no earlier output
    (a sequence-mean gate would let every position read the future)."""
    model = tiny_lm.lm(family, vocab_size=VOCAB)
    lamina.apply(model, "unipelt")
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(3)) * 0.3)
        ids = torch.randint(4, VOCAB, (1, 8), generator=torch.Generator().manual_seed(4))
        other = ids.clone()
        other[0, -1] = (ids[0, -1] + 1) % VOCAB
        key = "decoder_input_ids" if family == "t5" else "input_ids"
        extra = {"input_ids": ids[:, :5]} if family == "t5" else {}
        a = model(**{**extra, key: ids}).logits
        b = model(**{**extra, key: other}).logits
    torch.testing.assert_close(a[:, :-1], b[:, :-1], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(a[:, -1], b[:, -1])
