"""What the generation kinds (seq2seq, sft) share: reading their .jsonl/.csv files with file:line
errors, the model's context length, the evaluation pass (teacher-forced loss and perplexity on the
label tokens, then `model.generate`), and the text metrics.

Metrics (all percentages but the loss): `exact_match` after SQuAD answer normalisation (lower case, no
punctuation or articles), ROUGE-1/2/L F-measure from `rouge-score` (its tokenizer keeps ASCII letters and
digits only, with Porter stemming), corpus BLEU from `sacrebleu`; `loss` is the mean cross-entropy per
label token, `perplexity` its exponential.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

from .base import DataFiles, TaskError, TaskSpec
from .kind import EvalSet, TaskKind, TaskOptions, model_device

log = logging.getLogger("lamina.train")

DEFAULT_NEW_TOKENS = 64  # when neither the run nor the caller says how long generations may be
TEXT_METRICS = ("exact_match", "rouge1", "rouge2", "rougeL", "bleu", "loss", "perplexity")
_BOOKKEEPING = ("example", "prompt_ids", "reference")
_SPLIT_STEMS = {"train": ("train",), "validation": ("dev", "validation", "val"), "test": ("test",)}


# --------------------------------------------------------------------------- files


def split_file(data, split: str) -> Path:
    """The file holding `split`: given explicitly, or train/dev/test .jsonl/.csv in a folder, or the file."""
    from .textcls import find_split_file

    if isinstance(data, DataFiles):
        file = data.get(split)
        if file is None:
            raise TaskError(f"no {split} file given (--train-file / --dev-file)")
        return file
    return find_split_file(data, split) if data.is_dir() else data


def records(path: Path):
    """(line, record) of a .jsonl/.csv file (line numbers as an editor shows them)."""
    from .textcls import _records

    for line, rec in _records(Path(path)):
        rec.pop("__header__", None)
        yield line, rec


def text_field(rec: dict, name: str, path, line, *, required: bool = True, empty_ok: bool = False) -> str | None:
    """A string field; missing, non-string or (unless `empty_ok`) empty ones are one-line errors."""
    value = rec.get(name)
    if value is None:
        if required:
            raise TaskError.at(path, f"missing field {name!r}", line)
        return None
    if not isinstance(value, str):
        raise TaskError.at(path, f"field {name!r} must be a string, got {type(value).__name__}", line)
    if not empty_ok and not value.strip():
        raise TaskError.at(path, f"field {name!r} is empty", line)
    return value


def where(example: dict) -> str:
    """'file:line' of an example read from a file, else its id."""
    if example.get("file"):
        return f"{example['file']}:{example['line']}"
    return f"example {example.get('id')}"


def context_length(config) -> int | None:
    """Most positions the model can take (None: relative positions, no fixed limit, e.g. T5; or unknown)."""
    if config is None:
        return None
    if getattr(config, "relative_attention_num_buckets", None):  # T5: relative position buckets
        return None
    for attr in ("n_positions", "max_position_embeddings"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_fits(example: dict, field: str, n_tokens: int, context: int | None) -> None:
    if context is not None and n_tokens > context:
        raise TaskError(f"{where(example)}: field {field!r}: {n_tokens} tokens, more than the model's context of "
                        f"{context}")


# --------------------------------------------------------------------------- metrics


def text_metrics(predictions: list[str], references: list[str]) -> dict[str, float]:
    """exact_match, rouge1/2/L (F-measure) and corpus BLEU, all in percent."""
    import sacrebleu
    from rouge_score import rouge_scorer

    from .metrics import squad_exact

    if len(predictions) != len(references) or not references:
        raise TaskError(f"text metrics: {len(predictions)} predictions for {len(references)} references")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    sums = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for pred, ref in zip(predictions, references):
        for key, score in scorer.score(ref, pred).items():
            sums[key] += score.fmeasure
    n = len(references)
    out = {"exact_match": 100.0 * sum(squad_exact(p, r) for p, r in zip(predictions, references)) / n}
    out.update({k: 100.0 * v / n for k, v in sums.items()})
    out["bleu"] = float(sacrebleu.corpus_bleu(predictions, [references]).score)
    return out


def loss_metrics(nll_sum: float, tokens: int) -> dict[str, float]:
    loss = nll_sum / max(tokens, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}


# --------------------------------------------------------------------------- the kind base


class GenerativeKind(TaskKind):
    """A kind scored by decoding: features hold `input_ids`, `labels` (-100 where no loss is taken) and,
    for evaluation, `prompt_ids` (what generation starts from), `reference` and `example` (its index)."""

    decoder_only = False  # the model continues the prompt (sft) instead of decoding from an encoder (seq2seq)
    input_field = "source"  # the input field a spec of this kind names

    def spec_from_data(self, data) -> TaskSpec:
        """A spec named after the kind, with whichever of train / validation / test files the data has."""
        splits = {}
        for key in ("train", "validation", "test"):
            try:
                splits[key] = str(split_file(data, key))
            except TaskError:
                pass
        return self._spec(splits)

    def placeholder_spec(self, num_labels: int = 2) -> TaskSpec:
        return self._spec({})

    def _spec(self, splits: dict) -> TaskSpec:
        return TaskSpec(name=self.name, kind=self.name, text_fields=(self.input_field,), metrics=TEXT_METRICS,
                        main_metric="rougeL", splits=splits, family=self.name)

    def check_spec(self, spec: TaskSpec) -> None:
        if spec.labels:
            raise TaskError(f"task {spec.name!r}: a {self.name} task has no label set")

    def check_labelled(self, spec, examples, what) -> None:
        """The readers already refuse lines without a target."""

    def model_inputs(self, features: list[dict]) -> list[dict]:
        return [{k: v for k, v in f.items() if k not in _BOOKKEEPING} for f in features]

    def collator(self, tokenizer, model):
        from transformers import DataCollatorForSeq2Seq

        return DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)

    def claims(self, model) -> bool:
        name = type(model).__name__
        return ("ForCausalLM" in name or "LMHeadModel" in name) if self.decoder_only else "ForConditionalGeneration" in name

    def check_model(self, spec, model) -> None:
        from lamina.errors import LaminaError

        if not self.claims(model):
            raise LaminaError(f"task {spec.name!r} is {spec.kind} but this adapter's model is {type(model).__name__}")

    def new_tokens(self, options: TaskOptions) -> int:
        return options.max_new_tokens or DEFAULT_NEW_TOKENS

    def longest_target(self, options: TaskOptions, features: list[dict]) -> None:
        """Training features fix the default generation length: the longest target seen."""
        if options.max_new_tokens is None and features:
            options.max_new_tokens = max(sum(1 for t in f["labels"] if t != -100) for f in features)

    # ------------------------------------------------------------------ scoring
    def score_generations(self, spec: TaskSpec, texts: list[str], examples: list[dict]) -> dict[str, float]:
        """Metrics of the generated texts (one per example)."""
        return text_metrics(texts, [ex["target"] for ex in examples])

    @torch.no_grad()
    def label_nll(self, model, data: EvalSet) -> tuple[float, int]:
        """(summed cross-entropy, label tokens) over the split, teacher-forced."""
        collate = self.collator(data.tokenizer, model)
        device = model_device(model)
        inputs = self.model_inputs(data.features)
        total, count = 0.0, 0
        for i in range(0, len(inputs), data.options.batch_size):
            batch = {k: v.to(device) for k, v in collate(inputs[i:i + data.options.batch_size]).items()}
            labels = batch["labels"]
            logits = model(**batch).logits.float()
            if self.decoder_only:  # token t predicts token t+1
                logits, labels = logits[:, :-1], labels[:, 1:]
            nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                    ignore_index=-100, reduction="sum")
            total += float(nll)
            count += int((labels != -100).sum())
        return total, count

    @torch.no_grad()
    def generate(self, model, tokenizer, prompts: list[list[int]], options: TaskOptions) -> list[str]:
        """Decoded generations for token-id prompts (greedy, or beam search with num_beams > 1), in order."""
        device = model_device(model)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        context = context_length(model.config)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        texts: list[str] = [""] * len(prompts)
        for start in range(0, len(order), options.batch_size):
            rows = [prompts[i] for i in order[start:start + options.batch_size]]
            width = max(len(r) for r in rows)
            budget = self.new_tokens(options)
            if self.decoder_only and context is not None:
                budget = max(1, min(budget, context - width))
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for j, row in enumerate(rows):  # decoder-only: left padding, so every prompt ends at the same place
                lo = width - len(row) if self.decoder_only else 0
                ids[j, lo:lo + len(row)] = torch.tensor(row)
                mask[j, lo:lo + len(row)] = 1
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=budget,
                                 num_beams=options.num_beams, do_sample=False, pad_token_id=pad)
            if self.decoder_only:
                out = out[:, width:]
            for j, seq in enumerate(out.tolist()):
                texts[order[start + j]] = tokenizer.decode(seq, skip_special_tokens=True).strip()
        return texts

    def evaluate(self, model, data: EvalSet) -> dict[str, float]:
        was_training = model.training
        model.eval()
        try:
            metrics = loss_metrics(*self.label_nll(model, data))
            texts = self.generate(model, data.tokenizer, [f["prompt_ids"] for f in data.features], data.options)
        finally:
            model.train(was_training)
        examples = [data.examples[f["example"]] for f in data.features]
        return {**self.score_generations(data.spec, texts, examples), **metrics}
