"""Data and tiny models for the worked example in docs/generation.md (no download).

From a SQuAD v1.1 file (the official dev-v1.1.json will do) it writes, under --out:

- squad-seq2seq/{train,dev}.jsonl: source "question: <q> context: <the sentence holding the answer>",
  target the first gold answer (seq2seq);
- squad-sft/{train,dev}.jsonl: the same as prompt "Question: ...\\nContext: ...\\nAnswer:" and response
  " <answer>" (sft);
- tiny-t5/ and tiny-llama/: randomly initialised models built from a config (T5: 2+2 layers, width 64;
  Llama: 2 layers, width 64, 512 positions) with a byte-level BPE tokenizer trained on the training texts.

Train and dev are split by article (no context is in both). The models are random: they show that the
commands run end to end, not what fine-tuning a pretrained model achieves. The Llama weights start wider
than usual (initializer_range 0.2, not 0.02): with 0.02 the frozen random output layer can hardly make any
next token likelier than another, so no PEFT design moves the loss of a random model.

    python examples/make_tiny_generation.py --squad ../shared/data/squad/dev-v1.1.json --out runs/gen
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path


def sentence_with(context: str, start: int) -> str:
    """The sentence of `context` that holds character `start` (split after . ! ? and a space)."""
    bounds = [0] + [m.end() for m in re.finditer(r"[.!?]\s+", context)] + [len(context)]
    for lo, hi in zip(bounds, bounds[1:]):
        if lo <= start < hi:
            return context[lo:hi].strip()
    return context


def squad_rows(path: Path, train_articles: int, dev_articles: int) -> tuple[list[dict], list[dict]]:
    from lamina.tasks import load_squad

    examples = load_squad(path)
    titles = list(dict.fromkeys(ex["title"] for ex in examples))
    split = {t: "train" for t in titles[:train_articles]}
    split.update({t: "dev" for t in titles[train_articles:train_articles + dev_articles]})
    out = {"train": [], "dev": []}
    for ex in examples:
        part = split.get(ex["title"])
        if part is None:
            continue
        answer, start = ex["answers"]["text"][0], ex["answers"]["answer_start"][0]
        out[part].append({"id": ex["id"], "question": ex["question"].strip(), "answer": answer,
                          "context": sentence_with(ex["context"], start)})
    return out["train"], out["dev"]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    from lamina.util import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def tokenizer(texts: list[str], vocab_size: int, specials: list[str], template: str | None):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if template:
        tok.post_processor = processors.TemplateProcessing(
            single=template, special_tokens=[(t, tok.token_to_id(t)) for t in ("<s>", "</s>") if t in template])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   bos_token="<s>")


def main() -> None:
    import torch
    import transformers as T

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--squad", type=Path, required=True, help="SQuAD v1.1 JSON file")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--train-articles", type=int, default=8)
    parser.add_argument("--dev-articles", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=2000)
    args = parser.parse_args()

    train, dev = squad_rows(args.squad, args.train_articles, args.dev_articles)
    for name, rows in (("train", train), ("dev", dev)):
        write_jsonl(args.out / "squad-seq2seq" / f"{name}.jsonl", [
            {"id": r["id"], "source": f"question: {r['question']} context: {r['context']}", "target": r["answer"]}
            for r in rows])
        write_jsonl(args.out / "squad-sft" / f"{name}.jsonl", [
            {"id": r["id"], "prompt": f"Question: {r['question']}\nContext: {r['context']}\nAnswer:",
             "response": f" {r['answer']}"} for r in rows])
    texts = [f"{r['question']} {r['context']} {r['answer']}" for r in train]

    torch.manual_seed(0)
    t5_tok = tokenizer(texts + ["question: context:"], args.vocab, ["<pad>", "</s>", "<unk>", "<s>"], "$A </s>")
    t5 = T.T5ForConditionalGeneration(T.T5Config(
        vocab_size=len(t5_tok), d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4,
        dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))
    llama_tok = tokenizer(texts + ["Question: Context: Answer:"], args.vocab, ["<pad>", "<s>", "</s>", "<unk>"],
                          "<s> $A")
    llama = T.LlamaForCausalLM(T.LlamaConfig(
        vocab_size=len(llama_tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        initializer_range=0.2))  # see the module docstring
    for name, model, tok in (("tiny-t5", t5, t5_tok), ("tiny-llama", llama, llama_tok)):
        model.save_pretrained(args.out / name)
        tok.save_pretrained(args.out / name)
    print(f"{len(train)} train / {len(dev)} dev questions ({args.train_articles} / {args.dev_articles} articles); "
          f"tiny-t5 {sum(p.numel() for p in t5.parameters()):,} and tiny-llama "
          f"{sum(p.numel() for p in llama.parameters()):,} parameters; in {args.out}")


if __name__ == "__main__":
    main()
