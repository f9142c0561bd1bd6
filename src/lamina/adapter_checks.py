"""Checks of saved adapters, before anything large is allocated: the fields of design.json, the tensors
(finite), the base model they are loaded on (same depth and widths as the one they were trained on), the
size the design would build against what the file holds, and PEFT adapter_config.json fields.
Each failure is a one-line `LaminaError` naming the file and field."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from lamina.checks import type_name
from lamina.errors import LaminaError

DTYPES = ("float32", "float16", "bfloat16", "float64")
# config fields that fix the shape of what an adapter trained: they must agree between the base the adapter was
# trained on (design.json's base_config) and the base it is loaded on
SHAPE_FIELDS = (
    ("num_hidden_layers", "layers"), ("n_layer", "layers"), ("num_layers", "encoder layers"),
    ("num_decoder_layers", "decoder layers"), ("hidden_size", "hidden size"), ("n_embd", "hidden size"),
    ("d_model", "hidden size"), ("num_attention_heads", "attention heads"), ("n_head", "attention heads"),
    ("num_heads", "attention heads"), ("num_key_value_heads", "key/value heads"), ("intermediate_size", "FFN width"),
    ("n_inner", "FFN width"), ("d_ff", "FFN width"), ("d_kv", "head width"), ("encoder_layers", "encoder layers"),
    ("decoder_layers", "decoder layers"), ("encoder_attention_heads", "encoder attention heads"),
    ("decoder_attention_heads", "decoder attention heads"), ("encoder_ffn_dim", "encoder FFN width"),
    ("decoder_ffn_dim", "decoder FFN width"),
)


def check_info(info: dict, where) -> None:
    """Types of the design.json fields lamina uses (the design itself is checked by the design layer)."""
    def need(key, kinds, what):
        if key in info and info[key] is not None and (isinstance(info[key], bool) and bool not in kinds
                                                      or not isinstance(info[key], kinds)):
            raise LaminaError(f"{where}: '{key}' must be {what}, found {type_name(info[key])} {json.dumps(info[key])[:60]}")

    if not isinstance(info.get("design"), dict):
        raise LaminaError(f"{where}: 'design' must be an object (the design), found {type_name(info.get('design'))}")
    if isinstance(info.get("format_version"), bool):
        raise LaminaError(f"{where}: 'format_version' must be an integer, found a boolean")
    need("base_config", (dict,), "an object (the base model's config)")
    need("tied", (dict,), "an object")
    for key in ("base_model_name_or_path", "model_class", "model_type", "adapter_name", "sha256", "dtype"):
        need(key, (str,), "a string")
    need("full", (bool,), "true or false")
    if info.get("dtype") is not None and info["dtype"] not in DTYPES:
        raise LaminaError(f"{where}: 'dtype' must be one of {', '.join(DTYPES)}, found '{info['dtype']}'")
    labels = (info.get("base_config") or {}).get("id2label")
    if labels is not None and not (isinstance(labels, dict) and all(str(k).isdigit() and isinstance(v, str)
                                                                     for k, v in labels.items())):
        raise LaminaError(f"{where}: 'base_config.id2label' must map label ids (\"0\", \"1\", ...) to label names")


def check_finite(tensors: dict[str, torch.Tensor], where) -> None:
    """No NaN or infinite values: such an adapter (a diverged run, a damaged file) would score as if fine."""
    for key in sorted(tensors):
        value = tensors[key]
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise LaminaError(f"{where}: tensor '{key}' holds {bad} NaN or infinite value(s) of {value.numel()}; "
                              "this adapter is unusable (did its training diverge?)")


def _shape(config) -> dict:
    data = config if isinstance(config, dict) else config.to_dict()
    return {key: data[key] for key, _ in SHAPE_FIELDS if isinstance(data.get(key), int)}


def check_same_base(info: dict, config, base_name: str, where) -> None:
    """The base an adapter is loaded on must have the depth and widths of the one it was trained on."""
    trained = info.get("base_config")
    if not isinstance(trained, dict):
        return
    if info.get("model_type") and info["model_type"] != getattr(config, "model_type", None):
        raise LaminaError(f"{where}: this adapter was trained on a '{info['model_type']}' model; "
                          f"'{base_name}' is '{getattr(config, 'model_type', None)}'")
    saved, now = _shape(trained), _shape(config)
    for key, what in SHAPE_FIELDS:
        if key in saved and key in now and saved[key] != now[key]:
            raise LaminaError(f"{where}: this adapter was trained on a model with {saved[key]} {what} ({key}); "
                              f"the base '{base_name}' has {now[key]}: load it on the model it was trained on")


def check_stored_size(report, tensors: dict[str, torch.Tensor], where) -> None:
    """The design, counted on the meta device, must not need far more values than the file holds: a damaged
    design.json (a rank of 10^9) is refused before anything is allocated. Small differences are left to the
    tensor-by-tensor comparison after the build, which names the tensor."""
    held = sum(t.numel() for t in tensors.values())
    if report.stored > 2 * held + 4096:
        raise LaminaError(f"{where}: the design in design.json builds {report.stored:,} stored values but the tensor "
                          f"file holds {held:,}; design.json and the tensors do not belong together")


# --- PEFT adapter_config.json ---------------------------------------------------------------------------
PEFT_TASKS = ("SEQ_CLS", "SEQ_2_SEQ_LM", "CAUSAL_LM", "TOKEN_CLS", "QUESTION_ANS", "FEATURE_EXTRACTION")


def check_peft_config(folder: str | Path) -> dict:
    """The adapter_config.json of a PEFT folder, with the fields lamina reads strictly typed."""
    from lamina.checks import read_json_object

    path = Path(folder) / "adapter_config.json"
    if not path.is_file():
        return {}  # the importer says what is missing
    cfg = read_json_object(path, "PEFT adapter config")

    def bad(key, what):
        raise LaminaError(f"{path}: '{key}' must be {what}, found {type_name(cfg[key])} {json.dumps(cfg[key])[:60]}")

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    def is_number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if not isinstance(cfg.get("peft_type"), str):
        raise LaminaError(f"{path}: 'peft_type' must name the PEFT method (\"LORA\")")
    if cfg.get("task_type") is not None and cfg["task_type"] not in PEFT_TASKS:
        raise LaminaError(f"{path}: unknown task_type '{cfg['task_type']}' (PEFT's are: {', '.join(PEFT_TASKS)}, or null)")
    if "r" in cfg and not (is_int(cfg["r"]) and cfg["r"] >= 1):
        bad("r", "a positive integer")
    if cfg.get("lora_alpha") is not None and not is_number(cfg["lora_alpha"]):
        bad("lora_alpha", "a number")
    if cfg.get("lora_dropout") is not None and not (is_number(cfg["lora_dropout"]) and 0 <= cfg["lora_dropout"] < 1):
        bad("lora_dropout", "a number in [0, 1)")
    targets = cfg.get("target_modules")
    if targets is not None and not (isinstance(targets, str) or isinstance(targets, list) and all(isinstance(t, str) for t in targets)):
        bad("target_modules", "a module name, a list of names, or a regular expression")
    layers = cfg.get("layers_to_transform")
    if layers is not None and not (is_int(layers) or isinstance(layers, list) and all(is_int(x) for x in layers)):
        bad("layers_to_transform", "a layer index or a list of them")
    for key, check in (("rank_pattern", is_int), ("alpha_pattern", is_number)):
        value = cfg.get(key)
        if value is not None and not (isinstance(value, dict) and all(check(v) for v in value.values())):
            bad(key, "an object mapping module names to numbers")
    saved = cfg.get("modules_to_save")
    if saved is not None and not (isinstance(saved, list) and all(isinstance(s, str) for s in saved)):
        bad("modules_to_save", "a list of module names")
    if cfg.get("base_model_name_or_path") is not None and not isinstance(cfg["base_model_name_or_path"], str):
        bad("base_model_name_or_path", "a string")
    return cfg


def check_peft_folder(folder: str | Path, base: str | None) -> str | None:
    """Before a PEFT adapter is imported: its config (strict types), its weights (finite; pickle-only folders
    are refused by the importer unopened) and the base model it names (a config lamina can build,
    safetensors weights)."""
    import safetensors.torch

    from lamina.checks import check_weights, first_line, model_config

    folder = Path(folder)
    cfg = check_peft_config(folder)
    weights = folder / "adapter_model.safetensors"
    if weights.is_file():
        try:
            tensors = safetensors.torch.load_file(str(weights))
        except Exception as err:  # noqa: BLE001 - safetensors' own error types for a damaged header
            raise LaminaError(f"{weights}: not a valid safetensors file ({first_line(err)})") from None
        check_finite(tensors, weights)
    name = base or cfg.get("base_model_name_or_path")
    if name:
        config = model_config(name)
        check_weights(name)
        layers = cfg.get("layers_to_transform")
        depth = getattr(config, "num_hidden_layers", None)  # every family's configs map their own name to it
        beyond = [x for x in ([layers] if isinstance(layers, int) else layers or []) if depth and not 0 <= x < depth]
        if beyond:
            raise LaminaError(f"{folder / 'adapter_config.json'}: layers_to_transform lists layer {beyond[0]}, but "
                              f"the base model '{name}' has {depth} layers (0-{depth - 1})")
    return name
