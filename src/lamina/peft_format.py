"""Hugging Face PEFT interop: LoRA designs <-> PEFT LoRA adapter folders.

The PEFT folder format, as written by peft 0.21's own `save_pretrained` (studied on tiny models):
- `adapter_config.json`: `peft_type: "LORA"`, `task_type`, `base_model_name_or_path`, `r`, `lora_alpha`,
  `lora_dropout`, `target_modules` (names matched exactly or as a dotted suffix of a module name;
  `layers_to_transform` + `layers_pattern` filter by block index), `rank_pattern` / `alpha_pattern`
  (regex keys matched as a dotted suffix), `modules_to_save` (extra trained module copies; PEFT adds
  "classifier" and "score" itself for sequence classification).
- `adapter_model.safetensors`: `base_model.model.<module path>.lora_A.weight` [r, in] and `.lora_B.weight`
  [out, r], and `base_model.model.<module path>.<param>` for each modules_to_save copy.
PEFT scales by lora_alpha / r, lamina by alpha / r: the same number, so logits match exactly.

Export needs no weights: the module paths come from the base model's skeleton, built on the meta
device from the config stored in design.json. Which modules a config targets is always decided by
PEFT's own matcher (when peft is installed): export writes the most compact config that PEFT resolves
to exactly the adapted modules; import asks PEFT which modules a config targets.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from lamina.arch import CANONICAL_TARGETS, Layer, ModelMap, is_projection, map_model
from lamina.design import Design, Group
from lamina.methods.lora import LoRA
from lamina.errors import LaminaError
from lamina.inject import adapters_of, apply, delete_adapter, group_layers
from lamina.io import (
    PICKLE_SUFFIXES, pickle_refusal, check_tensors, model_class, read_info, read_tensors, save, write_folder,
)
from lamina.methods.head import head_key

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


def _peft():
    try:
        import peft  # noqa: F401
        from peft.tuners.tuners_utils import check_target_module_exists
        from peft.utils.other import get_pattern_key
    except ImportError:
        return None
    return check_target_module_exists, get_pattern_key


def _number(x: float):
    return int(x) if float(x).is_integer() else float(x)


# --- export ------------------------------------------------------------------------------------------
def _refuse_unexpressible(design: Design, info: dict) -> None:
    if info.get("full") or design.full:
        raise LaminaError("full fine-tuning cannot be expressed as a PEFT LoRA adapter (use `lamina merge`)")
    if design.prompt is not None:
        raise LaminaError("prompt tuning (soft prompt tokens) cannot be expressed in a PEFT LoRA adapter")
    names = {"bitfit": "BitFit (bias deltas)", "adapter": "bottleneck adapters", "prefix": "prefix tuning", "ln": "LayerNorm tuning"}
    for g, group in enumerate(design.groups):
        for s in group.strategies:
            if s.method != "lora":
                raise LaminaError(f"groups[{g}] (layers {group.first}-{group.last}): {names[s.method]} cannot be expressed in a PEFT LoRA adapter")
            if s.gated:
                raise LaminaError(f"groups[{g}] (layers {group.first}-{group.last}): gated LoRA (UniPELT gates) cannot be expressed in a PEFT LoRA adapter")


def skeleton(info: dict) -> nn.Module:
    """The base model's module tree on the meta device, from the config stored in design.json."""
    import transformers

    cls = model_class(info)
    if not info.get("base_config"):
        raise LaminaError("design.json has no base_config; re-save the adapter with this lamina version")
    config = transformers.AutoConfig.for_model(**info["base_config"])
    with torch.device("meta"):
        return cls._from_config(config)


def _stack_list_name(layer: Layer) -> str:
    return layer.path.rsplit(".", 2)[-2]  # 'bert.encoder.layer.3' -> 'layer'


def _target_config(wanted: dict[str, tuple], names: list[str], modules_to_save) -> dict:
    """The most compact target_modules / layers_to_transform that PEFT resolves to exactly `wanted`."""
    where = {path: spec[3] for path, spec in wanted.items()}  # path -> (layer, site path)
    relative = sorted({site for _, site in where.values()})
    leaves = sorted({site.rsplit(".", 1)[-1] for site in relative})
    local = sorted({layer.local_index for layer, _ in where.values()})
    patterns = sorted({_stack_list_name(layer) for layer, _ in where.values()})
    pattern = patterns[0] if len(patterns) == 1 else patterns
    candidates = []
    for targets in (leaves, relative):
        candidates.append(dict(target_modules=targets, layers_to_transform=None, layers_pattern=None))
        candidates.append(dict(target_modules=targets, layers_to_transform=local, layers_pattern=pattern))
    exact = dict(target_modules=sorted(wanted), layers_to_transform=None, layers_pattern=None)
    peft = _peft()
    if peft is None:
        return exact  # full module names: unambiguous without asking PEFT
    check = peft[0]
    for candidate in candidates + [exact]:
        probe = type("Probe", (), dict(candidate, exclude_modules=None, modules_to_save=modules_to_save, target_parameters=None))
        if {n for n in names if check(probe, n)} == set(wanted):
            return candidate
    raise LaminaError("PEFT's target matching cannot single out exactly the adapted modules of this design")


def _patterns(wanted: dict[str, tuple]) -> tuple[int, float, dict, dict]:
    """Default r / alpha = the most common pair; the other modules get rank_pattern / alpha_pattern
    entries keyed by their full module name (checked against PEFT's own pattern matcher)."""
    (r, alpha), _ = Counter((spec[0], spec[1]) for spec in wanted.values()).most_common(1)[0]
    rank = {path: spec[0] for path, spec in wanted.items() if spec[0] != r}
    alphas = {path: _number(spec[1]) for path, spec in wanted.items() if spec[1] != alpha}
    peft = _peft()
    if peft is not None:
        get_key = peft[1]
        for path, spec in wanted.items():
            if rank.get(get_key(rank.keys(), path), r) != spec[0] or alphas.get(get_key(alphas.keys(), path), alpha) != spec[1]:
                raise LaminaError(f"PEFT's rank_pattern matching would give '{path}' the wrong rank or alpha")
    return r, _number(alpha), rank, alphas


def export_peft(adapter_dir: str | Path, output: str | Path) -> Path:
    """Write a lamina adapter whose trained parts are ungated LoRA (any layers, per-group rank/alpha)
    and the task head as a PEFT LoRA adapter folder, loadable by `peft.PeftModel.from_pretrained`."""
    info = read_info(adapter_dir)
    design = Design.from_dict(info["design"])
    _refuse_unexpressible(design, info)
    tensors = read_tensors(adapter_dir, info)
    model = skeleton(info)
    mmap = map_model(model)
    wanted: dict[str, tuple] = {}  # module path -> (r, alpha, tensor key, (layer, site path))
    for g, group in enumerate(design.groups):
        (s,) = group.strategies or (None,)
        if s is None:
            continue
        alpha = s.alpha if s.alpha is not None else 2.0 * s.r
        for layer in group_layers(group, mmap):
            for target in s.targets:
                for site in mmap.sites(layer, target):
                    if site.parts > 1:
                        leaf = site.path.rsplit(".", 1)[-1]
                        raise LaminaError(
                            f"groups[{g}]: LoRA target '{target}' is slice {site.part + 1}/{site.parts} of the fused {leaf}; "
                            f"PEFT adapts whole modules only (target '{leaf}' instead)"
                        )
                    wanted[f"{layer.path}.{site.path}"] = (s.r, alpha, f"groups.{g}.lora.{layer.index}.{site.key}", (layer, site.path))
    dropouts = {s.dropout for group in design.groups for s in group.strategies}
    if len(dropouts) > 1:
        raise LaminaError(f"LoRA dropout differs between groups ({sorted(dropouts)}); PEFT has one lora_dropout")
    out = {}
    for path, (_, _, key, _) in wanted.items():
        out[f"{PREFIX}{path}.lora_A.weight"] = tensors.pop(f"{key}.A")
        out[f"{PREFIX}{path}.lora_B.weight"] = tensors.pop(f"{key}.B")
    heads = [p for p in mmap.head if any(k.startswith(f"heads.{head_key(p)}.") for k in tensors)]
    for path in heads:
        start = f"heads.{head_key(path)}."
        for key in [k for k in tensors if k.startswith(start)]:
            out[f"{PREFIX}{path}.{key[len(start):]}"] = tensors.pop(key)
    if tensors:
        raise LaminaError(f"tensor '{next(iter(sorted(tensors)))}' has no place in a PEFT LoRA adapter")
    if not wanted:
        raise LaminaError("this design has no LoRA modules; a PEFT LoRA adapter needs at least one")
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
        "peft_type": "LORA",
        "task_type": task,
        "base_model_name_or_path": info.get("base_model_name_or_path") or None,
        "revision": None,
        "inference_mode": True,
        "bias": "none",
        "lora_dropout": next(iter(dropouts), 0.0),
        "fan_in_fan_out": bool(wanted) and all(not isinstance(model.get_submodule(p), nn.Linear) for p in wanted),
        "init_lora_weights": True,
        "use_rslora": False,
        "use_dora": False,
        "modules_to_save": heads or None,
        "exclude_modules": None,
    }
    r, alpha, rank, alphas = _patterns(wanted)
    config.update(r=r, lora_alpha=alpha, rank_pattern=rank, alpha_pattern=alphas)
    config.update(_target_config(wanted, names, to_save))
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
UNSUPPORTED = {
    "use_dora": "DoRA (use_dora)", "use_rslora": "rank-stabilised scaling (use_rslora)", "lora_bias": "LoRA bias terms (lora_bias)",
    "layer_replication": "layer replication", "target_parameters": "LoRA on parameters (target_parameters)",
    "trainable_token_indices": "trainable token indices", "alora_invocation_tokens": "activated LoRA (alora)",
    "use_qalora": "QA-LoRA", "use_bdlora": "BD-LoRA",
}


def _read_peft_config(folder: Path) -> dict:
    if folder.is_file() and folder.suffix in PICKLE_SUFFIXES:
        raise pickle_refusal(folder)
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise LaminaError(f"{folder}: no {CONFIG_FILE}, so this is not a PEFT adapter folder")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise LaminaError(f"{path}: not valid JSON ({err})") from None
    if cfg.get("peft_type") != "LORA":
        raise LaminaError(f"{path}: PEFT method '{cfg.get('peft_type')}' cannot be imported (lamina imports LoRA adapters)")
    for key, what in UNSUPPORTED.items():
        if cfg.get(key):
            raise LaminaError(f"{path}: {what} has no lamina equivalent")
    if cfg.get("bias", "none") != "none":
        raise LaminaError(f"{path}: trained biases (bias='{cfg['bias']}') are not imported; lamina expresses them as BitFit")
    return cfg


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


def _lamina_targets(mmap: ModelMap, layer: Layer, sites: set[str]) -> tuple[str, ...]:
    """Canonical names where they cover whole target sets (q, v, ffn_in...), native paths for the rest."""
    left, chosen = set(sites), []
    for target in CANONICAL_TARGETS:
        found = mmap.sites(layer, target)
        paths = {s.path for s in found}
        if found and all(s.parts == 1 for s in found) and paths <= left:
            chosen.append(target)
            left -= paths
    for path in sorted(left):
        if [s.path for s in mmap.sites(layer, path)] != [path]:
            raise LaminaError(f"layer {layer.index}: cannot name the module '{path}' unambiguously as a lamina target")
        chosen.append(path)
    return tuple(chosen)


def import_peft(peft_dir: str | Path, output: str | Path, *, base=None, name: str = "default") -> Path:
    """Turn a PEFT LoRA adapter folder into a lamina adapter folder (design.json + adapter.safetensors).
    `base`: a model id/path (default: the config's base_model_name_or_path) or a loaded model; a loaded
    model keeps the imported adapter applied (active) under `name`."""
    import safetensors.torch

    folder = Path(peft_dir)
    cfg = _read_peft_config(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        pickles = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        raise pickle_refusal(pickles[0]) if pickles else LaminaError(f"{folder}: {WEIGHTS_FILE} is missing")
    peft = _peft()
    if peft is None:
        raise LaminaError("import-peft needs the 'peft' package (pip install 'lamina[peft]')")
    check, get_key = peft
    from peft import LoraConfig
    from peft.tuners.tuners_utils import _maybe_include_all_linear_layers

    try:
        tensors = safetensors.torch.load_file(str(weights))
    except Exception as err:
        raise LaminaError(f"{weights}: not a valid safetensors file ({str(err).splitlines()[0]})") from None
    model = _base_for(cfg, base)
    config = _maybe_include_all_linear_layers(LoraConfig.from_pretrained(str(folder)), model)
    mmap = map_model(model)
    per_layer: dict[int, tuple] = {}  # layer index -> (r, alpha, {site paths})
    lora = {}  # lamina key -> tensor
    for path, module in model.named_modules():
        if not path or not check(config, path):
            continue
        if not is_projection(module):
            raise LaminaError(f"PEFT LoRA on '{path}' ({type(module).__name__}): lamina adapts Linear/Conv1D projections only")
        layer = next((l for l in mmap.layers if path.startswith(l.path + ".")), None)
        if layer is None:
            raise LaminaError(f"PEFT LoRA on '{path}' lies outside the transformer blocks; lamina cannot express it")
        site = path[len(layer.path) + 1:]
        r = config.rank_pattern.get(get_key(config.rank_pattern.keys(), path), config.r)
        alpha = config.alpha_pattern.get(get_key(config.alpha_pattern.keys(), path), config.lora_alpha)
        old = per_layer.setdefault(layer.index, (r, alpha, set()))
        if old[:2] != (r, alpha):
            raise LaminaError(f"layer {layer.index}: PEFT gives its modules different ranks/alphas ({old[:2]} vs {(r, alpha)} at '{path}'); lamina has one LoRA size per group")
        old[2].add(site)
        for part, letter in (("lora_A", "A"), ("lora_B", "B")):
            key = f"{PREFIX}{path}.{part}.weight"
            if key not in tensors:
                raise LaminaError(f"{WEIGHTS_FILE}: tensor '{key}' is missing (the config targets '{path}')")
            lora[(layer.index, site, letter)] = tensors.pop(key)
    if not per_layer:
        raise LaminaError(f"{CONFIG_FILE}: the config targets no module of this {mmap.family.name} model ({config.target_modules})")
    groups, specs = [], []
    for index in sorted(per_layer):
        r, alpha, sites = per_layer[index]
        layer = mmap.layers[index]
        spec = (layer.stack, _lamina_targets(mmap, layer, sites), r, alpha)
        if specs and specs[-1][0] == spec and specs[-1][2] == index - 1:
            specs[-1][2] = index
        else:
            specs.append([spec, index, index])
    for (stack, targets, r, alpha), first, last in specs:
        strategy = LoRA(r=int(r), alpha=float(alpha), targets=targets, dropout=float(config.lora_dropout or 0.0))
        groups.append(Group(first=first, last=last, strategies=(strategy,)))
    head = {}
    for key in sorted(tensors):
        rest = key[len(PREFIX):] if key.startswith(PREFIX) else key
        owner = next((p for p in mmap.head if rest.startswith(p + ".")), None)
        if owner is None and ".lora_" in key:
            raise LaminaError(f"{WEIGHTS_FILE}: tensor '{key}' belongs to no module the config targets")
        if owner is None:
            raise LaminaError(f"{WEIGHTS_FILE}: tensor '{key}' is neither LoRA nor part of the task head; lamina cannot import it")
        head[f"heads.{head_key(owner)}.{rest[len(owner) + 1:]}"] = tensors[key]
    design = Design(name=f"peft-{folder.name}", groups=tuple(groups), train_head=bool(head))
    apply(model, design, name=name)
    adapters = adapters_of(model)[name]
    try:
        state = adapters.state_dict()
        for g, group in enumerate(design.groups):
            for layer in group_layers(group, mmap):
                for target in group.strategies[0].targets:
                    for site in mmap.sites(layer, target):
                        for letter in ("A", "B"):
                            state[f"groups.{g}.lora.{layer.index}.{site.key}.{letter}"] = lora.pop((layer.index, site.path, letter))
        check_tensors(adapters.state_dict(), {**state, **head})
        adapters.load_state_dict({**state, **head}, strict=True)
        return save(model, output, name)
    except BaseException:
        delete_adapter(model, name)
        raise
