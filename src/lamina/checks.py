"""Checks that run before anything is loaded, allocated or written: each failure is a `LaminaError` whose one
line names the file, field or value and what would be accepted.

- files: `read_text` / `read_json` / `read_json_object` (exists, is a file, UTF-8, valid JSON, the right type);
- models: `model_config` (a Hub id, a model folder or a config.json; the config's structural fields strictly
  typed and consistent, its model type one lamina supports), `check_weights` (a local model folder must hold
  safetensors weights: pickle-only folders are refused, never opened), `check_max_length`;
- designs: `design_argument` (a --design file must be readable UTF-8 YAML/JSON holding a mapping);
- numbers: `positive`, `finite`.

Adapter folders (design.json fields, tensors, the base they were trained on) are checked in
`lamina.adapter_checks`; output paths in `lamina.outputs`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
from pathlib import Path

from lamina.errors import LaminaError
from lamina.util import not_a_file

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
DESIGN_SUFFIXES = (".yaml", ".yml", ".json")

# config fields that size a model: when present (and not null) each must be an int >= 1 (never a bool)
INT_FIELDS = (
    "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
    "max_position_embeddings", "type_vocab_size", "embedding_size", "num_key_value_heads", "head_dim",
    "n_embd", "n_layer", "n_head", "n_inner", "n_positions", "n_ctx",
    "d_model", "d_ff", "d_kv", "num_layers", "num_decoder_layers", "num_heads",
    "encoder_layers", "decoder_layers", "encoder_attention_heads", "decoder_attention_heads", "encoder_ffn_dim",
    "decoder_ffn_dim",
)
# depth fields: the deepest models in use have a few hundred layers; a typo of 10^9 would build for hours
DEPTH_FIELDS, MAX_DEPTH = ("num_hidden_layers", "n_layer", "num_layers", "num_decoder_layers", "encoder_layers",
                           "decoder_layers"), 1000
# (width, heads) pairs where the width must split evenly over the heads
HEAD_SPLITS = (("hidden_size", "num_attention_heads"), ("n_embd", "n_head"), ("d_model", "encoder_attention_heads"),
               ("d_model", "decoder_attention_heads"))


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return " ".join(text.splitlines()[0].split()) if text else type(err).__name__


# --- files -------------------------------------------------------------------------------------------
def read_text(path: str | Path, what: str = "file") -> str:
    path = Path(path)
    if path.is_dir():
        raise LaminaError(f"{path}: is a folder; expected a {what}")
    if not path.is_file():
        raise LaminaError(f"{what} {not_a_file(path)}: {path}")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise LaminaError(f"{path}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
                          f"save the {what} as UTF-8") from None


def read_json(path: str | Path, what: str = "JSON file"):
    path = Path(path)
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise LaminaError(f"{path}:{err.lineno}: not valid JSON ({err.msg}, column {err.colno})") from None
    except RecursionError:
        raise LaminaError(f"{path}: nested too deeply to be a {what}") from None


def read_json_object(path: str | Path, what: str = "JSON file") -> dict:
    data = read_json(path, what)
    if not isinstance(data, dict):
        raise LaminaError(f"{path}: expected a JSON object {{...}} at the top level, found {type_name(data)}")
    return data


def type_name(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


# --- numbers -----------------------------------------------------------------------------------------
def finite(name: str, value) -> None:
    if value is not None and not math.isfinite(value):
        raise LaminaError(f"{name} must be a finite number, got {value}")


def positive(name: str, value, allow_zero: bool = False) -> None:
    """`value` (if given) is a finite number > 0 (>= 0 with allow_zero)."""
    if value is None:
        return
    finite(name, value)
    if value < 0 or (value == 0 and not allow_zero):
        raise LaminaError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    at_most(name, value)


_INDEXED = (2**31 - 1, "below 2**31 (tensor sizes and loaders index with it)")
# The largest value each count may take, by its Python name (a CLI flag --num-beams is num_beams): beyond these
# a value is a typo that would hang the run or exhaust memory, not a setting. Other integers stay below 2**63.
LIMITS = {
    "batch_size": _INDEXED, "max_length": _INDEXED, "doc_stride": _INDEXED, "grad_accum": _INDEXED, "limit": _INDEXED,
    "num_beams": (128, "at most 128 (every beam's cache is held at once: 10^5 beams on a tiny Llama filled 24 GB)"),
    "max_new_tokens": (65_536, "at most 65,536 (a model without a fixed context, such as T5, that never emits EOS "
                               "would generate all of them)"),
    "epochs": (100_000, "at most 100,000 (1e300 epochs would train until the machine is switched off)"),
}


def at_most(name: str, value) -> None:
    """`value` (if given) within its `LIMITS` entry; any other integer below 2**63."""
    key = name.lstrip("-").replace("-", "_")
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if key in LIMITS:
        limit, phrase = LIMITS[key]
    elif isinstance(value, int):
        limit, phrase = 2**63 - 1, "below 2**63"
    else:
        return
    if value > limit:
        raise LaminaError(f"{name} must be {phrase}, got {value}")


# --- model configs -------------------------------------------------------------------------------------
def supported_model_types() -> list[str]:
    from lamina.arch import FAMILIES

    return sorted({t for f in FAMILIES.values() for t in f.model_types})


def check_config_dict(data: dict, where) -> None:
    """Strict types for the fields that size a model, a model type lamina supports, heads that split the width."""
    model_type = data.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise LaminaError(f"{where}: no 'model_type' field (e.g. \"bert\"), so the architecture is unknown")
    supported = supported_model_types()
    if model_type not in supported:
        raise LaminaError(f"{where}: unsupported model type '{model_type}' (lamina supports: {', '.join(supported)})")
    bad = next((k for k, v in data.items() if isinstance(v, float) and not math.isfinite(v)), None)
    if bad is not None:
        raise LaminaError(f"{where}: '{bad}' is {data[bad]}; a model's settings must be finite numbers")
    for key in INT_FIELDS:
        value = data.get(key)
        if value is None:
            continue
        least = 0 if key == "type_vocab_size" else 1  # DeBERTa-v2 has no token types
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            what = "a non-negative" if least == 0 else "a positive"
            raise LaminaError(f"{where}: '{key}' must be {what} integer, got {json.dumps(value)}")
    deep = next((k for k in DEPTH_FIELDS if isinstance(data.get(k), int) and data[k] > MAX_DEPTH), None)
    if deep is not None:
        raise LaminaError(f"{where}: '{deep}' is {data[deep]:,}; lamina builds models of at most {MAX_DEPTH:,} layers")
    _check_numerics(data, where)
    vocab, pad = data.get("vocab_size"), data.get("pad_token_id")
    if isinstance(vocab, int) and isinstance(pad, int) and not isinstance(pad, bool) and not 0 <= pad < vocab:
        raise LaminaError(f"{where}: 'pad_token_id' {pad} is outside the vocabulary (0..{vocab - 1}, vocab_size {vocab})")
    if model_type in ("t5", "mt5") or data.get("head_dim"):
        return
    for width, heads in HEAD_SPLITS:
        if data.get(width) and data.get(heads) and data[width] % data[heads]:
            raise LaminaError(f"{where}: {width} {data[width]} is not divisible by {heads} {data[heads]} "
                              f"(each head gets {width} / {heads} dimensions)")
    kv, heads = data.get("num_key_value_heads"), data.get("num_attention_heads")
    if kv and heads and heads % kv:
        raise LaminaError(f"{where}: num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}")
    labels = data.get("id2label")
    if labels is not None and not (isinstance(labels, dict) and all(str(k).lstrip("-").isdigit() for k in labels)):
        raise LaminaError(f"{where}: 'id2label' must map label ids (\"0\", \"1\", ...) to names")


ACT_FIELDS = ("hidden_act", "activation_function", "hidden_activation")
EPS_FIELDS = ("layer_norm_eps", "layer_norm_epsilon", "rms_norm_eps")


def _check_numerics(data: dict, where) -> None:
    """Fields transformers reads without checking: an activation it does not know (a KeyError deep in the
    build), a dropout probability outside [0, 1], a non-positive norm epsilon (NaN for near-constant rows)."""
    from transformers.activations import ACT2FN

    for key in ACT_FIELDS:
        value = data.get(key)
        if isinstance(value, str) and value not in ACT2FN:
            raise LaminaError(f"{where}: '{key}' {value!r} is not an activation transformers knows "
                              f"(e.g. {', '.join(sorted(ACT2FN)[:6])}, ...)")
    for key, value in data.items():
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if is_number and key.endswith(("dropout", "dropout_prob", "_pdrop", "dropout_rate")) and not 0 <= value <= 1:
            raise LaminaError(f"{where}: '{key}' is {value}; a dropout probability is between 0 and 1")
        if is_number and key in EPS_FIELDS and not value > 0:
            raise LaminaError(f"{where}: '{key}' is {value}; a normalisation epsilon must be > 0")


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def model_config(name: str, **kwargs):
    """The config of a model given as a Hub id, a local model folder or a config.json file, checked
    (`check_config_dict`); `kwargs` go to the config (num_labels, id2label...)."""
    from transformers import AutoConfig

    name = str(name)
    path = Path(name).expanduser()
    if path.is_dir():
        config_path = path / "config.json"
        if not config_path.is_file():
            raise LaminaError(f"{path}: no config.json here, so this is not a Hugging Face model folder")
        check_config_dict(read_json_object(config_path, "config file"), config_path)
        source, load = config_path, lambda: AutoConfig.from_pretrained(str(path), **kwargs)
    elif path.suffix == ".json" or path.is_file():
        if path.is_file() and path.suffix != ".json":
            raise LaminaError(f"{path}: not a model; give a model folder, a Hub id or a config.json file")
        data = read_json_object(path, "config file")
        check_config_dict(data, path)
        source, load = path, lambda: AutoConfig.for_model(**{**data, **kwargs})
    elif _looks_like_path(name):
        raise LaminaError(f"cannot load model '{name}': no such folder")
    else:
        source, load = f"model '{name}'", lambda: AutoConfig.from_pretrained(name, **kwargs)
    try:
        config = load()
    except Exception as err:  # noqa: BLE001 - parsing a user's config: every failure is about that input
        raise LaminaError(f"cannot load a model config from {source}: {first_line(err)}") from None
    check_config_dict(config.to_dict(), source)
    return config


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                   "tokenizer.model", "sentencepiece.bpe.model", "spm.model")


def has_tokenizer_files(folder: Path) -> bool:
    return any((folder / f).is_file() for f in TOKENIZER_FILES)


def check_tokenizer_files(name: str) -> None:
    """A local model folder must hold its tokenizer: without one, transformers builds a tokenizer of a few
    special tokens and every word becomes [UNK] — a run that trains on nothing without a word."""
    path = Path(str(name)).expanduser()
    if path.is_dir() and not has_tokenizer_files(path):
        raise LaminaError(f"{path}: no tokenizer files here ({', '.join(TOKENIZER_FILES[:3])}, ...); save the "
                          "model's tokenizer into the folder (tokenizer.save_pretrained(folder))")


def load_tokenizer(name: str):
    """AutoTokenizer.from_pretrained(name); a tokenizer its files cannot make (a tokenizer_config.json that
    is a list, a broken tokenizer.json, an unknown tokenizer class) is one line naming the folder, not
    transformers' traceback; one asking for the model's own code (auto_map) is refused unread."""
    from transformers import AutoTokenizer

    check_tokenizer_files(name)
    folder = Path(str(name)).expanduser()
    for file in ("tokenizer_config.json", "config.json"):
        data = _json_or_none(folder / file)
        if isinstance(data, dict) and data.get("auto_map"):
            raise LaminaError(f"{folder / file}: 'auto_map' asks for the model's own Python code; lamina does not run "
                              "code shipped with a model (use a tokenizer transformers provides)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError, KeyError, AttributeError, TypeError, IndexError, RecursionError) as err:
        detail = first_line(err) or type(err).__name__
        raise LaminaError(f"cannot load a tokenizer from '{name}': {detail} (check its tokenizer files: "
                          f"{', '.join(TOKENIZER_FILES[:3])})") from None
    except Exception as err:  # the Rust tokenizers library raises its own types, or a bare Exception
        if type(err) is not Exception and type(err).__module__.split(".")[0] != "tokenizers":
            raise
        raise LaminaError(f"cannot load a tokenizer from '{name}': {first_line(err)}") from None
    return tokenizer


def _json_or_none(path: Path):
    try:
        return read_json(path) if path.is_file() else None
    except (LaminaError, OSError):
        return None  # the loader that reads it answers a broken file


def check_tokenizer_fits(tokenizer, config, name: str) -> None:
    """A tokenizer with more tokens than the model has embedding rows gives ids the model cannot look up
    (another model's tokenizer, or added tokens without a resize)."""
    rows = getattr(config, "vocab_size", None)
    if isinstance(rows, int) and len(tokenizer) > rows:
        raise LaminaError(f"{name}: the tokenizer has {len(tokenizer):,} tokens, the model {rows:,} embedding rows "
                          "(vocab_size); this tokenizer does not belong to this model")


def check_loaded(model, loading: dict, name: str) -> None:
    """What from_pretrained reported (`output_loading_info`) and what it loaded, checked: the body (all
    but the task head) must come from the weights file — a tensor the config builds but the file lacks
    would start random, and layers the file holds beyond the ones the config builds would be dropped
    (config.json and the weights describe different models) — and no weight may be NaN or infinite
    (every output would be)."""
    import torch

    from lamina.arch import map_model

    heads = tuple(f"{path}." for path in map_model(model).head)
    missing = sorted(k for k in loading.get("missing_keys", ()) if not k.startswith(heads))
    if missing:
        raise LaminaError(f"{name}: the weights lack {len(missing)} tensor(s) config.json builds (first "
                          f"'{missing[0]}'); they would start random: config.json does not describe these weights")
    lists = {name for name, module in model.named_modules() if isinstance(module, torch.nn.ModuleList)}
    extra = sorted(k for k in loading.get("unexpected_keys", ()) if _beyond_a_list(k, lists))
    if extra:
        raise LaminaError(f"{name}: the weights hold {len(extra)} tensor(s) config.json does not build (first "
                          f"'{extra[0]}'); they would be dropped: config.json does not describe these weights")
    for key, value in model.named_parameters():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise LaminaError(f"{name}: weight '{key}' holds NaN or infinite values; every output would too")


def _beyond_a_list(key: str, lists: set[str]) -> bool:
    """Whether a saved tensor sits at an index of one of the model's module lists ('encoder.layer.5.…'
    where the config builds 4 layers): the saved model was deeper. Keys of modules this class does not
    build at all (a pooler a token-classification model leaves out, a pretraining head) are dropped by
    design and pass."""
    parts = key.split(".")
    for i in range(1, len(parts)):
        if parts[i].isdigit():
            prefix = ".".join(parts[:i])
            if prefix in lists or any(name.endswith("." + prefix) for name in lists):
                return True
    return False


def check_weights(name: str) -> None:
    """A local model folder must hold safetensors weights. A folder with only pickle weights (.bin/.pt...)
    is refused without opening them: unpickling can run code. (Hub models are loaded with
    use_safetensors=True, which refuses pickles the same way.)"""
    path = Path(str(name)).expanduser()
    if not path.is_dir():
        return
    if any(path.glob("*.safetensors")) or (path / "model.safetensors.index.json").is_file():
        for file in sorted(path.glob("*.safetensors")):
            check_float_weights(file)
        return
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise LaminaError(
            f"{path}: the weights are only in a pickle file ({pickles[0]}); lamina loads safetensors only, because "
            "unpickling can run code. Convert once, where you trust the file: "
            "AutoModel.from_pretrained(folder).save_pretrained(folder, safe_serialization=True)")
    raise LaminaError(f"{path}: no model weights here (model.safetensors)")


FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}


def check_float_weights(file: Path) -> None:
    """Every `.weight` / `.bias` in a safetensors header is a float: from_pretrained would silently cast an
    integer matrix (a damaged or foreign file) to float and train on it. Reads the header only; a broken
    header is left to the loader, which names it."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(file), framework="pt") as handle:
            dtypes = {key: handle.get_slice(key).get_dtype() for key in handle.keys()}
    except (OSError, SafetensorError):
        return
    for key, dtype in dtypes.items():
        if key.endswith((".weight", ".bias")) and dtype not in FLOAT_DTYPES:
            raise LaminaError(f"{file}: tensor '{key}' is {dtype}, not a floating-point weight; this file does not "
                              "hold weights lamina can load")


def max_tokens(config) -> int | None:
    """The longest input the model's position embeddings can hold (None: no absolute limit)."""
    from lamina.arch import max_tokens as positions

    return positions(config)


def default_max_length(config, preferred: int = 128) -> int:
    """128 tokens, or fewer when the model's positions hold fewer."""
    limit = max_tokens(config)
    return min(preferred, limit) if limit else preferred


def check_max_length(config, value: int | None, flag: str = "--max-length") -> None:
    if value is None:
        return
    if value < 1:
        raise LaminaError(f"{flag} must be >= 1, got {value}")
    limit = max_tokens(config)
    if limit is not None and value > limit:
        raise LaminaError(f"{flag} {value} is more than this model's {limit} positions "
                          f"(max_position_embeddings in its config); use at most {limit}")


# --- designs -----------------------------------------------------------------------------------------
def is_design_file(value) -> bool:
    return isinstance(value, Path) or (isinstance(value, str) and bool(value.strip())
                                       and (value.endswith(DESIGN_SUFFIXES) or path_exists(value)))


def path_exists(value: str) -> bool:
    """Path(value).exists(), False for what cannot be a path at all (a 16 kB preset string is too long a
    file name for the OS; a NUL byte is no path)."""
    try:
        return Path(value).exists()
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def naming_design_file(design):
    """Design-layer errors about a design file name the file (the design layer names only the field)."""
    from lamina.errors import DesignError

    try:
        yield
    except DesignError as err:
        if is_design_file(design) and not str(err).startswith(str(design)):
            raise DesignError(f"{design}: {err}") from None
        raise


def load_yaml(path: Path, what: str, error: type[LaminaError] = LaminaError):
    """A UTF-8 YAML (or JSON) file's data; every way it can fail to parse is one `error` line naming the file
    (and the line, where YAML knows it)."""
    import yaml

    text = read_text(path, what)
    try:
        return yaml.load(text, Loader=_unique_key_loader())
    except RecursionError:
        raise error(f"{path}: nested too deeply to be a {what}") from None
    except _DuplicateKey as dup:
        raise error(f"{path}:{dup.line}: key {dup.key!r} given twice in one mapping (which one was meant?)") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise error(f"{path}{where}: not valid YAML/JSON ({first_line(err)})") from None


class _DuplicateKey(Exception):
    def __init__(self, key, line: int):
        self.key, self.line = key, line


@functools.lru_cache(maxsize=1)
def _unique_key_loader():
    """yaml's SafeLoader, except that a mapping naming a key twice is an error (plain YAML keeps the last
    value silently: `r: 4` then `r: 8` would train r = 8 without a word)."""
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, (str, int, float, bool)) or key is None:
                    if key in seen:
                        raise _DuplicateKey(key, key_node.start_mark.line + 1)
                    seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return Loader


def design_argument(value) -> None:
    """A design given as a file must be a readable UTF-8 YAML/JSON mapping (the design layer then checks
    its fields); preset strings are left to the design layer."""
    if not is_design_file(value):
        return
    path = Path(value)
    data = load_yaml(path, "design file")
    if not isinstance(data, dict):
        raise LaminaError(f"{path}: a design must be a mapping with 'groups' (and optional 'prompt', 'budget', "
                          f"'train_head', 'full'), found {type_name(data)}")
