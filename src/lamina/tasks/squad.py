"""SQuAD v1.1: loading, a by-article split of the dev file, window features and span decoding.

Contexts longer than ``max_length`` are cut into overlapping windows (``stride`` tokens shared) so
no answer is lost; training windows that do not contain the whole answer point start and end at the
CLS token. At evaluation every window of a question votes through its logits and the best valid
span over all windows is mapped back to characters of the original context via offsets.
Only fast tokenizers give offsets, and the question is assumed to be the first sequence.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

import numpy as np

from .base import TaskError, TaskSpec, require_file, take

squad_spec = TaskSpec(
    name="squad", kind="qa", text_fields=("question", "context"), metrics=("exact_match", "f1"),
    main_metric="f1", splits={"train": "train-v1.1.json", "validation": "dev-v1.1.json"}, family="squad",
)


# --------------------------------------------------------------------------- loading


def _need(obj, key, kind, path, where):
    if not isinstance(obj, dict) or key not in obj:
        raise TaskError.at(path, f"{where}: missing field {key!r} (not SQuAD v1.1 structure)")
    value = obj[key]
    if not isinstance(value, kind):
        raise TaskError.at(path, f"{where}.{key}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def load_squad(path, limit: int | None = None) -> list[dict]:
    """Read a SQuAD v1.1 JSON file into one example dict per question (file order)."""
    path = require_file(Path(path))
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise TaskError.at(path, f"malformed JSON at column {e.colno}: {e.msg}", e.lineno) from None
    except UnicodeDecodeError as e:
        raise TaskError.at(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except RecursionError:
        raise TaskError.at(path, "nested too deeply to be a SQuAD file (data -> paragraphs -> qas)") from None
    if not isinstance(data, dict):
        raise TaskError.at(path, "top level must be an object with 'data' (not SQuAD v1.1 structure)")
    version = str(data.get("version", "1.1"))
    if not version.startswith("1."):
        raise TaskError.at(path, f"SQuAD version {version!r} is not supported (v1.1 only; v2 has unanswerable "
                                 "questions)")
    examples, seen = [], set()
    for a, article in enumerate(_need(data, "data", list, path, "top level")):
        where = f"data[{a}]"
        title = str(article.get("title", f"article-{a}")) if isinstance(article, dict) else ""
        for p, para in enumerate(_need(article, "paragraphs", list, path, where)):
            pw = f"{where}.paragraphs[{p}]"
            context = _need(para, "context", str, path, pw)
            for q, qa in enumerate(_need(para, "qas", list, path, pw)):
                qw = f"{pw}.qas[{q}]"
                qid = _qid(qa, path, qw)
                if qid in seen:
                    raise TaskError.at(path, f"{qw}: duplicate question id {qid!r}")
                seen.add(qid)
                texts, starts = [], []
                for n, ans in enumerate(_need(qa, "answers", list, path, qw)):
                    aw = f"{qw}.answers[{n}]"
                    text = _need(ans, "text", str, path, aw)
                    start = _need(ans, "answer_start", int, path, aw)
                    if isinstance(start, bool):
                        raise TaskError.at(path, f"{aw}.answer_start: expected int, got bool")
                    if not 0 <= start <= len(context) - len(text):
                        raise TaskError.at(path, f"{aw}: answer_start {start} puts the {len(text)}-character answer "
                                                 f"outside the {len(context)}-character context")
                    if context[start:start + len(text)] != text:
                        raise TaskError.at(path, f"{aw}: answer_start {start} does not point at the answer "
                                                 f"{text[:40]!r} (the context has {context[start:start + len(text)][:40]!r} there)")
                    texts.append(text)
                    starts.append(start)
                examples.append({"id": qid, "title": title, "question": _need(qa, "question", str, path, qw),
                                 "context": context, "answers": {"text": texts, "answer_start": starts}})
    if not examples:
        raise TaskError.at(path, "no questions (empty dataset)")
    return take(examples, limit)


def _qid(qa, path, where) -> str:
    if not isinstance(qa, dict) or "id" not in qa:
        raise TaskError.at(path, f"{where}: missing field 'id' (not SQuAD v1.1 structure)")
    return str(qa["id"])


def split_by_article(examples_or_path, dev_fraction: float = 0.2, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Split questions into (train, dev) by article title, so no context leaks across the split.

    Used to make a train part from the dev file when train-v1.1.json is not available. Titles are
    taken in first-seen order, shuffled with ``random.Random(seed)``; the first
    ``max(1, round(n_titles * dev_fraction))`` titles form dev. Both parts keep file order.
    """
    examples = load_squad(examples_or_path) if isinstance(examples_or_path, (str, Path)) else list(examples_or_path)
    if not 0.0 < dev_fraction < 1.0:
        raise TaskError(f"dev_fraction must be in (0, 1), got {dev_fraction}")
    titles = list(dict.fromkeys(ex.get("title", "") for ex in examples))
    if len(titles) < 2:
        raise TaskError(f"need at least 2 articles to split by article, found {len(titles)}")
    random.Random(seed).shuffle(titles)
    n_dev = min(len(titles) - 1, max(1, round(len(titles) * dev_fraction)))
    dev_titles = set(titles[:n_dev])
    train = [ex for ex in examples if ex.get("title", "") not in dev_titles]
    dev = [ex for ex in examples if ex.get("title", "") in dev_titles]
    return train, dev


# --------------------------------------------------------------------------- features


def _check_tokenizer(tokenizer) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise TaskError("SQuAD features need a fast tokenizer (offset mappings); got "
                        f"{type(tokenizer).__name__}")
    if getattr(tokenizer, "padding_side", "right") != "right":
        raise TaskError("SQuAD features assume a right-padded tokenizer with the question first; "
                        "set tokenizer.padding_side = 'right'")


def _windows(examples, tokenizer, max_length, stride, pad_to_max_length):
    _check_tokenizer(tokenizer)
    if stride >= max_length:
        raise TaskError(f"stride ({stride}) must be smaller than max_length ({max_length})")
    questions = [ex["question"].lstrip() for ex in examples]  # leading spaces only waste window room
    contexts = [ex["context"] for ex in examples]
    return tokenizer(questions, contexts, truncation="only_second", max_length=max_length, stride=stride,
                     return_overflowing_tokens=True, return_offsets_mapping=True,
                     padding="max_length" if pad_to_max_length else False)


def _model_inputs(enc, i) -> dict:
    feat = {"input_ids": list(enc["input_ids"][i]), "attention_mask": list(enc["attention_mask"][i])}
    if "token_type_ids" in enc:
        feat["token_type_ids"] = list(enc["token_type_ids"][i])
    return feat


def _cls_index(input_ids, tokenizer) -> int:
    cls_id = getattr(tokenizer, "cls_token_id", None)
    return input_ids.index(cls_id) if cls_id is not None and cls_id in input_ids else 0


def prepare_train_features(examples, tokenizer, max_length: int = 384, stride: int = 128,
                           pad_to_max_length: bool = False) -> list[dict]:
    """Tokenise (question, context) windows and label each with answer start/end token positions."""
    enc = _windows(examples, tokenizer, max_length, stride, pad_to_max_length)
    features = []
    for i, ex_index in enumerate(enc["overflow_to_sample_mapping"]):
        feat = _model_inputs(enc, i)
        cls = _cls_index(feat["input_ids"], tokenizer)
        seq_ids = enc.sequence_ids(i)
        offsets = enc["offset_mapping"][i]
        answers = examples[ex_index]["answers"]
        start = end = cls
        ctx = [t for t, s in enumerate(seq_ids) if s == 1]
        if answers["text"] and ctx:
            a_start = answers["answer_start"][0]
            a_end = a_start + len(answers["text"][0])
            first, last = ctx[0], ctx[-1]
            if offsets[first][0] <= a_start and offsets[last][1] >= a_end:  # answer wholly in this window
                start = next(t for t in ctx if offsets[t][1] > a_start)
                end = next(t for t in reversed(ctx) if offsets[t][0] < a_end)
        feat["start_positions"], feat["end_positions"] = start, end
        features.append(feat)
    return features


def prepare_eval_features(examples, tokenizer, max_length: int = 384, stride: int = 128,
                          pad_to_max_length: bool = False) -> list[dict]:
    """Windows plus ``example_id`` and ``offset_mapping`` (None outside the context) for decoding.

    Drop ``example_id``/``offset_mapping`` (see ``model_inputs``) before batching for the model.
    """
    enc = _windows(examples, tokenizer, max_length, stride, pad_to_max_length)
    features = []
    for i, ex_index in enumerate(enc["overflow_to_sample_mapping"]):
        feat = _model_inputs(enc, i)
        seq_ids = enc.sequence_ids(i)
        feat["example_id"] = examples[ex_index]["id"]
        feat["offset_mapping"] = [tuple(o) if s == 1 else None for o, s in zip(enc["offset_mapping"][i], seq_ids)]
        features.append(feat)
    return features


def model_inputs(features: list[dict]) -> list[dict]:
    """Features without the bookkeeping keys, ready for ``DataCollatorWithPadding``."""
    return [{k: v for k, v in f.items() if k not in ("example_id", "offset_mapping")} for f in features]


# --------------------------------------------------------------------------- decoding


def postprocess_predictions(examples, features, start_logits, end_logits, n_best: int = 20,
                            max_answer_length: int = 30) -> dict[str, str]:
    """Best span text per question id, searched over the n-best starts/ends of all its windows.

    Spans are skipped when they leave the context (offset None), end before they start, or are longer
    than ``max_answer_length`` tokens. Logit rows may be right-padded beyond a feature's length.
    """
    if len(features) != len(start_logits) or len(features) != len(end_logits):
        raise TaskError(f"{len(features)} features but {len(start_logits)} start / {len(end_logits)} end logit rows")
    by_example = defaultdict(list)
    for fi, feat in enumerate(features):
        by_example[feat["example_id"]].append(fi)
    predictions = {}
    for ex in examples:
        best = None  # (score, char_start, char_end)
        for fi in by_example.get(ex["id"], ()):
            offsets = features[fi]["offset_mapping"]
            n = len(offsets)
            s_log = np.asarray(start_logits[fi], dtype=np.float64)[:n]
            e_log = np.asarray(end_logits[fi], dtype=np.float64)[:n]
            starts = np.argsort(s_log)[::-1][:n_best]
            ends = np.argsort(e_log)[::-1][:n_best]
            for s in starts:
                if offsets[s] is None:
                    continue
                for e in ends:
                    if offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                        continue
                    score = s_log[s] + e_log[e]
                    if best is None or score > best[0]:
                        best = (score, offsets[s][0], offsets[e][1])
        predictions[ex["id"]] = ex["context"][best[1]:best[2]] if best else ""
    return predictions
