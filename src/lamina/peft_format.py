"""Hugging Face PEFT interop: lamina designs <-> PEFT adapter folders, for every method that declares a
PEFT codec (`Method.peft`; today LoRA with its DoRA / rsLoRA options, and IA3).

The PEFT folder format, as written by peft 0.21's own `save_pretrained` (studied on tiny models):
- `adapter_config.json`: `peft_type` ("LORA", "IA3"), `task_type`, `base_model_name_or_path`,
  `target_modules` (names matched exactly or as a dotted suffix of a module name; `layers_to_transform`
  + `layers_pattern` filter by block index), the type's own fields (LoRA: r, lora_alpha, rank_pattern,
  ...; IA3: feedforward_modules), `modules_to_save` (extra trained module copies; PEFT adds
  "classifier" and "score" itself for sequence classification).
- `adapter_model.safetensors`: `base_model.model.<module path>.<the type's tensor names>`, and
  `base_model.model.<module path>.<param>` for each modules_to_save copy.
A PEFT adapter holds one method, so a design exports when all its strategies map to one PEFT type.

This module does what every type shares (folders, task types, the base model, head copies, which
modules a config targets, grouping layers into a design); each method's codec
(`lamina.methods.peft_codec.PeftCodec`, in the method's own file) does the rest. Export needs no
weights: module paths come from the base model's skeleton, built on the meta device from the config
stored in design.json. Which modules a config targets is always decided by PEFT's own matcher.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from lamina.arch import is_projection, map_model
from lamina.build import group_layers
from lamina.design import Design, Group
from lamina.errors import LaminaError
from lamina.inject import adapters_of, apply, delete_adapter
from lamina.io import PICKLE_SUFFIXES, check_tensors, model_class, pickle_refusal, read_info, read_tensors, save
from lamina.methods import METHODS, Method
from lamina.methods.head import head_key
from lamina.methods.peft_codec import peft_matchers
from lamina.util import write_folder

CONFIG_FILE, WEIGHTS_FILE = "adapter_config.json", "adapter_model.safetensors"
PREFIX = "base_model.model."
TASKS = (  # model class name ending -> PEFT task type -> Auto class used to load the base on import
    ("ForSequenceClassification", "SEQ_CLS", "AutoModelForSequenceClassification"),
    ("ForTokenClassification", "TOKEN_CLS", "AutoModelForTokenClassification"),
    ("ForQuestionAnswering", "QUESTION_ANS", "AutoModelForQuestionAnswering"),
    ("ForConditionalGeneration", "SEQ_2_SEQ_LM", "AutoModelForSeq2SeqLM"),
    ("ForCausalLM", "CAUSAL_LM", "AutoModelForCausalLM"),
    ("LMHeadModel", "CAUSAL_LM", "AutoModelForCausalLM"),
)


def codec_methods() -> dict[str, Method]:
    """PEFT type -> the method whose codec writes and reads it."""
    return {m.peft.peft_type: m for m in METHODS.values() if m.peft is not None}


# --- export ------------------------------------------------------------------------------------------
def _exporting_method(design: Design, info: dict) -> Method:
    """The one method a PEFT adapter of this design would hold; one clear error names any part it cannot."""
    if info.get("full") or design.full:
        raise LaminaError("full fine-tuning cannot be expressed as a PEFT adapter (use `lamina merge`)")
    if design.prompt is not None:
        raise LaminaError("prompt tuning (soft prompt tokens) cannot be expressed in a PEFT adapter of this kind")
    used: dict[str, str] = {}
    for g, group in enumerate(design.groups):
        where = f"groups[{g}] (layers {group.first}-{group.last})"
        for s in group.strategies:
            method = METHODS[s.method]
            reason = method.label if method.peft is None else method.peft.refuse(s)
            if reason:
                raise LaminaError(f"{where}: {reason} cannot be expressed in a PEFT adapter")
            used.setdefault(method.peft.peft_type, where)
    if len(used) > 1:
        parts = ", ".join(f"{t} in {where}" for t, where in used.items())
        raise LaminaError(f"a PEFT adapter holds one method; this design mixes {parts}")
    if not used:
        known = " or ".join(codec_methods())
        raise LaminaError(f"this design has no modules PEFT can hold ({known}); a PEFT adapter needs at least one")
    return codec_methods()[next(iter(used))]


def skeleton(info: dict) -> nn.Module:
    """The base model's module tree on the meta device, from the config stored in design.json."""
    import transformers

    cls = model_class(info)
    if not info.get("base_config"):
        raise LaminaError("design.json has no base_config; re-save the adapter with this lamina version")
    config = transformers.AutoConfig.for_model(**info["base_config"])
    with torch.device("meta"):
        return cls._from_config(config)


def export_peft(adapter_dir: str | Path, output: str | Path) -> Path:
    """Write a lamina adapter whose trained parts all map to one PEFT type (any layers, per-group sizes)
    plus the task head as a PEFT adapter folder, loadable by `peft.PeftModel.from_pretrained`."""
    info = read_info(adapter_dir)
    design = Design.from_dict(info["design"])
    method = _exporting_method(design, info)
    codec = method.peft
    tensors = read_tensors(adapter_dir, info)
    model = skeleton(info)
    mmap = map_model(model)
    modules = {}
    for g, group in enumerate(design.groups):
        for s in group.strategies:
            for layer in group_layers(group, mmap):
                try:
                    modules.update(codec.export_layer(s, layer, mmap, tensors, f"groups.{g}.{s.method}."))
                except LaminaError as err:
                    raise LaminaError(f"groups[{g}]: {err}") from None
                except KeyError as err:  # design.json names a tensor the (checksum-valid) file does not hold
                    raise LaminaError(f"groups[{g}]: the adapter has no tensor '{err.args[0]}' that its design needs; "
                                      "design.json and the tensors do not belong together") from None
    out = {f"{PREFIX}{path}.{suffix}": t for path, m in modules.items() for suffix, t in m.tensors.items()}
    heads = [p for p in mmap.head if any(k.startswith(f"heads.{head_key(p)}.") for k in tensors)]
    for path in heads:
        start = f"heads.{head_key(path)}."
        for key in [k for k in tensors if k.startswith(start)]:
            out[f"{PREFIX}{path}.{key[len(start):]}"] = tensors.pop(key)
    if tensors:
        raise LaminaError(f"tensor '{next(iter(sorted(tensors)))}' has no place in a PEFT {codec.peft_type} adapter")
    task = next((t for end, t, _ in TASKS if info["model_class"].endswith(end)), "FEATURE_EXTRACTION")
    if task in ("SEQ_CLS", "TOKEN_CLS", "QUESTION_ANS") and not heads:
        task = None  # PEFT would expect a trained head copy for these task types; the base head is used as is
    to_save = list(heads) + ([n for n in ("classifier", "score") if n not in heads] if task == "SEQ_CLS" else [])
    names = [n for n, _ in model.named_modules()]
    for path in heads:  # PEFT wraps every module whose name ends with a modules_to_save entry
        hits = [n for n in names if n.endswith(path)]
        if hits != [path]:
            raise LaminaError(f"PEFT's modules_to_save entry '{path}' would also match {[h for h in hits if h != path]}")
    config = {
        "peft_type": codec.peft_type,
        "task_type": task,
        "base_model_name_or_path": info.get("base_model_name_or_path") or None,
        "revision": None,
        "inference_mode": True,
        "fan_in_fan_out": bool(modules) and all(not isinstance(model.get_submodule(p), nn.Linear) for p in modules),
        "modules_to_save": heads or None,
        "exclude_modules": None,
    }
    strategies = [s for group in design.groups for s in group.strategies]
    config.update(codec.export_config(modules, strategies, names, to_save))
    try:
        import peft

        config["peft_version"] = peft.__version__
    except ImportError:
        pass
    return _write_peft(Path(output), out, config)


def _write_peft(target: Path, tensors: dict, config: dict) -> Path:
    import safetensors.torch

    return write_folder(target, {
        WEIGHTS_FILE: lambda path: safetensors.torch.save_file(
            {k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={"format": "pt"}),
        CONFIG_FILE: lambda path: path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8"),
    })


# --- import ------------------------------------------------------------------------------------------
def _read_peft_config(folder: Path) -> tuple[dict, Method]:
    if folder.is_file() and folder.suffix in PICKLE_SUFFIXES:
        raise pickle_refusal(folder)
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise LaminaError(f"{folder}: no {CONFIG_FILE}, so this is not a PEFT adapter folder")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise LaminaError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(cfg, dict):
        raise LaminaError(f"{path}: a PEFT adapter config must be a JSON object, not {type(cfg).__name__}")
    methods = codec_methods()
    if cfg.get("peft_type") not in methods:
        raise LaminaError(f"{path}: PEFT method '{cfg.get('peft_type')}' cannot be imported (lamina imports {', '.join(methods)})")
    if cfg.get("task_type") is not None and cfg["task_type"] not in {t for _, t, _ in TASKS}:
        raise LaminaError(f"{path}: unknown task_type '{cfg['task_type']}' (known: {', '.join(sorted({t for _, t, _ in TASKS}))})")
    method = methods[cfg["peft_type"]]
    method.peft.check_config(cfg, path)
    return cfg, method


def _base_for(cfg: dict, base) -> nn.Module:
    if isinstance(base, nn.Module):
        return base
    import transformers

    name = base or cfg.get("base_model_name_or_path")
    if not name:
        raise LaminaError(f"{CONFIG_FILE} names no base model: pass --base MODEL")
    auto = next((a for _, t, a in TASKS if t == cfg.get("task_type")), None)
    try:
        if auto is None:  # no task type: the architecture the base checkpoint declares, else the bare model
            declared = (transformers.AutoConfig.from_pretrained(str(name)).architectures or [None])[0]
            cls = getattr(transformers, str(declared), None)
            auto = declared if isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel) else "AutoModel"
        return getattr(transformers, auto).from_pretrained(str(name)).eval()
    except (OSError, ValueError) as err:
        raise LaminaError(f"cannot load the base model '{name}': {str(err).strip().splitlines()[0]}") from None


def import_peft(peft_dir: str | Path, output: str | Path, *, base=None, name: str = "default") -> Path:
    """Turn a PEFT adapter folder (LoRA, DoRA, rsLoRA, IA3) into a lamina adapter folder (design.json +
    adapter.safetensors). `base`: a model id/path (default: the config's base_model_name_or_path) or a
    loaded model; a loaded model keeps the imported adapter applied (active) under `name`."""
    import safetensors.torch

    folder = Path(peft_dir)
    cfg, method = _read_peft_config(folder)
    codec = method.peft
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        pickles = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        raise pickle_refusal(pickles[0]) if pickles else LaminaError(f"{folder}: {WEIGHTS_FILE} is missing")
    peft = peft_matchers()
    if peft is None:
        raise LaminaError("import-peft needs the 'peft' package (pip install 'lamina[peft]')")
    import peft as peft_package
    from peft.tuners.tuners_utils import _maybe_include_all_linear_layers

    try:
        tensors = safetensors.torch.load_file(str(weights))
    except Exception as err:
        raise LaminaError(f"{weights}: not a valid safetensors file ({str(err).splitlines()[0]})") from None
    model = _base_for(cfg, base)
    try:
        config = getattr(peft_package, codec.config_class).from_pretrained(str(folder))
    except (ValueError, TypeError) as err:
        raise LaminaError(f"{folder / CONFIG_FILE}: PEFT rejects this config ({str(err).splitlines()[0]})") from None
    config = _maybe_include_all_linear_layers(config, model)
    mmap = map_model(model)
    per_layer: dict[int, dict[str, dict]] = {}  # layer index -> {site path: what the codec read}
    for path, module in model.named_modules():
        if not path or not peft[0](config, path):
            continue
        if not is_projection(module):
            raise LaminaError(f"PEFT {codec.peft_type} on '{path}' ({type(module).__name__}): lamina adapts Linear/Conv1D projections only")
        layer = next((l for l in mmap.layers if path.startswith(l.path + ".")), None)
        if layer is None:
            raise LaminaError(f"PEFT {codec.peft_type} on '{path}' lies outside the transformer blocks; lamina cannot express it")
        per_layer.setdefault(layer.index, {})[path[len(layer.path) + 1:]] = codec.read_module(config, path, tensors)
    if not per_layer:
        raise LaminaError(f"{CONFIG_FILE}: the config targets no module of this {mmap.family.name} model ({config.target_modules})")
    specs, states = [], {}
    for index in sorted(per_layer):
        layer = mmap.layers[index]
        strategy, states[index] = codec.layer_strategy(config, layer, mmap, per_layer[index])
        if specs and specs[-1][0] == (layer.stack, strategy) and specs[-1][2] == index - 1:
            specs[-1][2] = index
        else:
            specs.append([(layer.stack, strategy), index, index])
    groups = [Group(first=first, last=last, strategies=(strategy,)) for (_, strategy), first, last in specs]
    head = {}
    for key in sorted(tensors):
        rest = key[len(PREFIX):] if key.startswith(PREFIX) else key
        owner = next((p for p in mmap.head if rest.startswith(p + ".")), None)
        if owner is None:
            raise LaminaError(f"{WEIGHTS_FILE}: tensor '{key}' is neither {method.label} nor part of the task head; lamina cannot import it")
        head[f"heads.{head_key(owner)}.{rest[len(owner) + 1:]}"] = tensors[key]
    design = Design(name=f"peft-{folder.name}", groups=tuple(groups), train_head=bool(head))
    apply(model, design, name=name)
    adapters = adapters_of(model)[name]
    try:
        state = adapters.state_dict()
        for g, group in enumerate(design.groups):
            for index in group.layers:
                state.update({f"groups.{g}.{method.name}.{k}": v for k, v in states[index].items()})
        check_tensors(adapters.state_dict(), {**state, **head})
        adapters.load_state_dict({**state, **head}, strict=True)
        return save(model, output, name)
    except BaseException:
        delete_adapter(model, name)
        raise
