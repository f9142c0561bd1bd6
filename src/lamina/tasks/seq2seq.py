"""Text-to-text (seq2seq) on encoder-decoder LMs (T5, BART): the encoder reads a source, the decoder
writes the target; scored by decoding.

- Your own data (`--task seq2seq`): .jsonl lines (or .csv rows) with `source` and `target` (and an
  optional `id`) in train/dev files of a folder, or given as explicit files. Metrics: exact match,
  ROUGE-1/2/L, BLEU, loss, perplexity; the best checkpoint is picked by ROUGE-L.
- Other kinds' tasks on an encoder-decoder LM (this kind `adopt`s them): a kind with a text form
  (classification, regression, QA) gives the source and target strings and scores the generations with
  the task's own metrics. So `lamina train --model <t5> --task rte` trains "rte sentence1: ... sentence2:
  ..." -> "entailment", scored by accuracy on the decoded label names.

Sources longer than `max_length` tokens are cut to it (the usual encoder practice); targets too, which is
logged. A source or target longer than the model's context (BART: its position table) is an error that
names the file, line and field.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .base import TaskError, TaskSpec
from .generation import GenerativeKind, check_fits, context_length, records, split_file, text_field
from .kind import TaskOptions

log = logging.getLogger("lamina.train")


def is_text_to_text(config) -> bool:
    """An encoder-decoder model with a language-model head class (T5, BART, ...)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES

    return bool(getattr(config, "is_encoder_decoder", False)) and \
        getattr(config, "model_type", None) in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES


def load_pairs(path, limit: int | None = None) -> list[dict]:
    """{"id", "source", "target", "file", "line"} per line; a line without a source or target is an error."""
    path = Path(path)
    examples = []
    for line, rec in records(path):
        examples.append({"id": str(rec.get("id", len(examples))), "source": text_field(rec, "source", path, line),
                         "target": text_field(rec, "target", path, line), "file": str(path), "line": line})
        if limit is not None and len(examples) >= limit:
            break
    if not examples and limit != 0:
        raise TaskError.at(path, "no data rows (empty dataset)")
    return examples


class Seq2SeqKind(GenerativeKind):
    name = "seq2seq"
    data_tasks = ("seq2seq", "text2text", "t2t")
    input_help = "'source' (and optionally 'id')"

    # ------------------------------------------------------------------ spec
    def adopt(self, spec: TaskSpec, config) -> TaskSpec | None:
        if spec.kind == self.name or not getattr(spec.type, "text_form", False) or not is_text_to_text(config):
            return None
        return TaskSpec(name=spec.name, kind=self.name, text_fields=spec.text_fields,
                        metrics=(*spec.metrics, "loss", "perplexity"), main_metric=spec.main_metric,
                        splits=dict(spec.splits), family=spec.family, folder=spec.folder, base=spec)

    # ------------------------------------------------------------------ data
    def load_split(self, spec, data, split, limit=None):
        if spec.base is not None:
            return spec.base.type.load_split(spec.base, data, split, limit)
        return load_pairs(split_file(data, split), limit), None

    def training_data(self, spec, data, train_limit=None, eval_limit=None):
        if spec.base is not None:
            return spec.base.type.training_data(spec.base, data, train_limit, eval_limit)
        return super().training_data(spec, data, train_limit, eval_limit)

    def check_labelled(self, spec, examples, what) -> None:
        if spec.base is not None:
            spec.base.type.check_labelled(spec.base, examples, what)

    def pair(self, spec: TaskSpec, example: dict) -> tuple[str, str]:
        """(source, target) strings of an example (target "" when it has none)."""
        if spec.base is None:
            return example["source"], example.get("target") or ""
        kind = spec.base.type
        has_target = example.get("label") is not None or (example.get("answers") or {}).get("text")
        return kind.text_source(spec.base, example), kind.text_target(spec.base, example) if has_target else ""

    # ------------------------------------------------------------------ model and features
    def model_class(self, spec, config):
        import transformers as T

        return T.AutoModelForSeq2SeqLM, {}

    def encode(self, spec, examples, tokenizer, options: TaskOptions, train: bool) -> list[dict]:
        context = context_length(options.model_config)
        pairs = [self.pair(spec, ex) for ex in examples]
        sources = tokenizer([s for s, _ in pairs])["input_ids"]
        targets = tokenizer(text_target=[t for _, t in pairs])["input_ids"]
        features, cut = [], 0
        for i, (ex, src, tgt) in enumerate(zip(examples, sources, targets)):
            check_fits(ex, "source", len(src), context)
            check_fits(ex, "target", len(tgt), context)
            cut += len(src) > options.max_length or len(tgt) > options.max_length
            src, tgt = _cut(src, options.max_length), _cut(tgt, options.max_length)
            feature = {"input_ids": src, "attention_mask": [1] * len(src), "labels": tgt}
            if not train:
                feature.update(example=i, prompt_ids=src, reference=pairs[i][1])
            features.append(feature)
        if cut:
            log.info("%s: %d of %d examples cut to --max-length %d tokens", spec.name, cut, len(examples),
                     options.max_length)
        if train:
            self.longest_target(options, features)
        return features

    # ------------------------------------------------------------------ scoring and predict
    def score_generations(self, spec, texts, examples):
        if spec.base is not None:
            return spec.base.type.score_texts(spec.base, texts, examples)
        return super().score_generations(spec, texts, examples)

    def read_inputs(self, spec, path: Path) -> list[dict]:
        if spec.base is not None:
            return spec.base.type.read_inputs(spec.base, path)
        examples = []
        for line, rec in records(path):
            examples.append({"id": str(rec.get("id", len(examples))), "source": text_field(rec, "source", path, line),
                             "target": None, "file": str(path), "line": line})
        if not examples:
            raise TaskError.at(path, "no data rows (empty dataset)")
        return examples

    def predict(self, model, tokenizer, spec, examples, options: TaskOptions) -> list[dict]:
        """The generated text (and, for a recast task, what it names: label, score or answer)."""
        context = context_length(model.config)
        prompts = []
        for ex, ids in zip(examples, tokenizer([self.pair(spec, ex)[0] for ex in examples])["input_ids"]):
            check_fits(ex, "source", len(ids), context)
            prompts.append(_cut(ids, options.max_length))
        texts = self.generate(model, tokenizer, prompts, options)
        rows = []
        for ex, text in zip(examples, texts):
            row = {"id": ex["id"], "generation": text}
            if spec.base is not None:
                row.update(spec.base.type.text_prediction(spec.base, text))
            rows.append(row)
        return rows


def _cut(ids: list[int], max_length: int) -> list[int]:
    """At most max_length ids, keeping the final (end-of-sequence) id."""
    return ids if len(ids) <= max_length else ids[:max_length - 1] + ids[-1:]

