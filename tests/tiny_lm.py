"""Tiny random language models (T5, BART, GPT-2, Llama) with word-level tokenizers, saved like hub
models, plus small generated seq2seq / sft data sets. Nothing is downloaded."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
import transformers as T

import tiny

WORDS = ("good bad movie film plot actor great awful fun dull story scene the a is was very not and but who what "
         "where when which one two three four five city river king queen answer question be").split()
EXTRA = ("rte sst2 stsb sentence sentence1: sentence2: sentence: entailment not_entailment negative positive "
         "question: context: answer: user: assistant: system: ?").split()
NUMBERS = [f"{i / 5:.1f}" for i in range(26)]  # STS-B targets 0.0 .. 5.0
# ids the tiny configs use: T5 pad 0 / eos 1; the others pad 0, bos 1, eos 2
SPECIALS = {"t5": ["<pad>", "</s>", "<unk>", "<s>"], "default": ["<pad>", "<s>", "</s>", "<unk>"]}
DECODER_ONLY = ("gpt2", "llama")


def tokenizer(family: str, chat_template: str | None = None):
    """Word-level tokenizer over WORDS (+ task words), each with and without a leading space (and a lone
    space), so decoding a tokenised text gives it back exactly. T5 appends </s>, BART wraps in
    <s> ... </s>, Llama prepends <s>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    specials = SPECIALS["t5" if family == "t5" else "default"]
    words = (*WORDS, *EXTRA, *NUMBERS)
    vocab = {t: i for i, t in enumerate(specials + ["▁", "\n"] + ["▁" + w for w in words] + list(words))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split("\n", behavior="isolated"),
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)])
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    template = {"t5": "$A </s>", "bart": "<s> $A </s>", "llama": "<s> $A"}.get(family)
    if template:
        tok.post_processor = processors.TemplateProcessing(
            single=template, special_tokens=[(t, vocab[t]) for t in ("<s>", "</s>") if t in template])
    out = T.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                    bos_token="<s>")
    if chat_template:
        out.chat_template = chat_template
    return out


def lm(family: str, seed: int = 0, vocab_size: int | None = None):
    """A tiny random model with its language-model head (encoder-decoder or causal)."""
    torch.manual_seed(seed)
    cfg = tiny.config(family)
    cfg.vocab_size = vocab_size or len(tokenizer(family))
    if family in DECODER_ONLY:
        cfg.initializer_range = 0.2  # a frozen random LM head can then express peaked distributions
    cls = T.AutoModelForCausalLM if family in DECODER_ONLY else T.AutoModelForSeq2SeqLM
    return cls.from_config(cfg).eval()


def lm_dir(root: Path, family: str, seed: int = 0, chat_template: str | None = None) -> str:
    """A saved tiny model + tokenizer folder (cached per root)."""
    folder = Path(root) / f"tiny-{family}-lm{'-chat' if chat_template else ''}"
    if not (folder / "config.json").is_file():
        tok = tokenizer(family, chat_template)
        lm(family, seed, len(tok)).save_pretrained(folder)
        tok.save_pretrained(folder)
    return str(folder)


def pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """(source, target): the target is the source's words that are in FIVE (an easy, learnable rule)."""
    rng = random.Random(seed)
    keep = ("one", "two", "three", "four", "five")
    rows = []
    while len(rows) < n:
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 7))]
        target = [w for w in words if w in keep]
        if target:
            rows.append((" ".join(words), " ".join(target)))
    return rows


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def write_seq2seq(folder: Path, n_train: int = 32, n_dev: int = 8) -> Path:
    write_jsonl(folder / "train.jsonl", [{"source": s, "target": t} for s, t in pairs(n_train, 0)])
    write_jsonl(folder / "dev.jsonl", [{"source": s, "target": t, "id": f"d{i}"} for i, (s, t) in enumerate(pairs(n_dev, 1))])
    return folder


def write_sft(folder: Path, n_train: int = 32, n_dev: int = 8, chat: bool = False) -> Path:
    def record(s, t, i):
        if chat:
            return {"id": f"x{i}", "messages": [{"role": "user", "content": s}, {"role": "assistant", "content": t}]}
        return {"id": f"x{i}", "prompt": f"question: {s} answer:", "response": f" {t}"}

    write_jsonl(folder / "train.jsonl", [record(s, t, i) for i, (s, t) in enumerate(pairs(n_train, 0))])
    write_jsonl(folder / "dev.jsonl", [record(s, t, i) for i, (s, t) in enumerate(pairs(n_dev, 1))])
    return folder


CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }} {% endfor %}"
                 "{% if add_generation_prompt %}assistant: {% endif %}")
