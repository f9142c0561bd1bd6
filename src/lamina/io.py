"""Save and load what an adapter trained, and export a merged plain Hugging Face model.

An adapter on disk is a folder with two files:

- `adapter.safetensors`: only the trained tensors, named relative to the adapter's `AdapterSet`
  (`groups.0.lora.3.attention-self-query.A`, `heads.classifier.weight`, `prompt.embedding`). A prefix
  trained through a re-parameterisation MLP is stored as the keys/values the MLP produces
  (`groups.<g>.prefix.kv`); the MLP itself is not kept (it is computed from a copy, the live model keeps it).
- `design.json`, written last: the resolved design, the adapter name, the base model (name or path,
  class, type and config), dtype, lamina/transformers/torch versions and the sha256 of the tensor file.

Full fine-tuning (`full: true`) has no adapter: `adapter.safetensors` then holds the whole model state
dict (tied tensors stored once; their other names are listed under "tied" in design.json).

`load` rebuilds the adapter through `lamina.apply` (the one builder), with prefixes built collapsed,
then restores the tensors strictly: same names, same shapes, verified checksum. Pickle files are
never read. Writes are atomic: a new folder appears complete or not at all.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from lamina.adapter_checks import check_finite, check_info, check_same_base, check_stored_size
from lamina.build import AdapterSet, Report
from lamina.checks import check_loaded, check_weights, read_json
from lamina.design import Design, DesignError
from lamina.errors import LaminaError
from lamina.inject import CONTAINER, active_adapter, adapters_of, apply, delete_adapter, full_design
from lamina.methods import METHODS
from lamina.util import publish, temp_dir_next_to, write_folder  # noqa: F401  (write_folder: re-exported)

FORMAT, FORMAT_VERSION = "lamina-adapter", 1
DESIGN_FILE, TENSOR_FILE = "design.json", "adapter.safetensors"
REMAINING_DIR = "lamina-adapter"  # inside a partially merged export: the parts that could not be merged
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


# --- what is stored --------------------------------------------------------------------------------
def stored_design(design: Design) -> Design:
    """The design a saved folder is rebuilt with: each method's stored form (prefix MLPs collapsed)."""
    groups = tuple(
        g.model_copy(update={"strategies": tuple(METHODS[s.method].stored_strategy(s) for s in g.strategies)})
        for g in design.groups
    )
    return design.model_copy(update={"groups": groups})


def stored_tensors(adapters: AdapterSet) -> dict[str, torch.Tensor]:
    """What `save` writes for one AdapterSet: each method's stored tensors, the prompt and head copies."""
    out = {}
    for g, _, s, method, module in adapters.parts():
        out.update({f"groups.{g}.{s.method}.{k}": v for k, v in method.stored_tensors(module).items()})
    for key, value in adapters.state_dict().items():
        if not key.startswith("groups."):
            out[key] = value.detach().contiguous()
    return out


def _full_tensors(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The model's own state dict; a tensor reachable under several names (tied weights) is stored
    once and its other names are returned as {alias: stored name}."""
    tensors, tied, seen, storages = {}, {}, {}, set()
    for key, value in model.state_dict().items():
        if key.startswith(CONTAINER + "."):
            continue
        ident = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape), tuple(value.stride()), value.dtype)
        if ident in seen:
            tied[key] = seen[ident]
            continue
        seen[ident] = key
        value = value.detach().contiguous()
        ptr = value.untyped_storage().data_ptr()
        tensors[key] = value.clone() if ptr in storages else value  # overlapping views must not share memory
        storages.add(ptr)
    return tensors, tied


def _pick(model: nn.Module, name: str | None) -> str | None:
    """The adapter to save: `name`, else the active one, else the only one; None = full fine-tuning."""
    adapters = adapters_of(model)
    if name is not None:
        if name not in adapters:
            raise LaminaError(f"no adapter named '{name}' on this model (loaded: {', '.join(adapters) or 'none'})")
        return name
    active = [n for n in [active_adapter(model)] if n is not None]
    if active:
        return active[0]
    if len(adapters) == 1:
        return next(iter(adapters))
    if adapters:
        raise LaminaError(f"this model carries several adapters ({', '.join(adapters)}) and none is active: pass name=")
    if full_design(model) is not None:
        return None
    raise LaminaError("this model carries no lamina adapter to save (apply or load a design first)")


def adapter_info(model: nn.Module, name: str, design: Design, full: bool, tensors: dict, tied=None, base: str | None = None) -> dict:
    import lamina
    import transformers

    config = model.config
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "adapter_name": name,
        "full": full,
        "design": design.to_dict(),
        "base_model_name_or_path": base if base is not None else str(getattr(config, "_name_or_path", "") or ""),
        "model_class": type(model).__name__,
        "model_type": config.model_type,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "lamina_version": lamina.__version__,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "tensor_file": TENSOR_FILE,
        "stored_tensors": len(tensors),
        "stored_params": sum(t.numel() for t in tensors.values()),
        "tied": tied or {},
        "notes": "full fine-tuning: the whole state dict" if full else "trained tensors only; prefix keys/values stored collapsed",
        "base_config": json.loads(config.to_json_string(use_diff=False)),
    }


# --- writing ---------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_adapter_dir(directory: str | Path, tensors: dict[str, torch.Tensor], info: dict) -> Path:
    """Write tensors + design.json atomically (tensors first, design.json with their checksum last)."""
    import safetensors.torch

    def tensors_file(path: Path) -> None:
        safetensors.torch.save_file(tensors, str(path), metadata={"format": "pt", "lamina": FORMAT})

    def design_file(path: Path) -> None:
        path.write_text(json.dumps({**info, "sha256": _sha256(path.parent / TENSOR_FILE)}, indent=2) + "\n", encoding="utf-8")

    return write_folder(directory, {TENSOR_FILE: tensors_file, DESIGN_FILE: design_file})


def save(model: nn.Module, directory: str | Path, name: str | None = None) -> Path:
    """Save one adapter (default: the active one) as design.json + adapter.safetensors; a model under
    a full fine-tuning design saves its whole state dict. Returns the folder."""
    picked = _pick(model, name)
    if picked is None:
        tensors, tied = _full_tensors(model)
        info = adapter_info(model, "full", full_design(model), True, tensors, tied)
    else:
        adapters = adapters_of(model)[picked]
        tensors = stored_tensors(adapters)
        info = adapter_info(model, picked, adapters.design, False, tensors)
    return write_adapter_dir(directory, tensors, info)


# --- reading ---------------------------------------------------------------------------------------
def pickle_refusal(path: Path) -> LaminaError:
    return LaminaError(
        f"refusing to load {path.name}: pickle-based weight files (.bin/.pt/.pkl) can run code when loaded; "
        "lamina reads safetensors only"
    )


def read_info(directory: str | Path) -> dict:
    """The parsed, checked design.json of an adapter folder (a design.json path is accepted too)."""
    path = Path(directory)
    if path.is_file():
        if path.suffix in PICKLE_SUFFIXES:
            raise pickle_refusal(path)
        if path.name != DESIGN_FILE:
            raise LaminaError(f"{path}: expected an adapter folder holding {DESIGN_FILE} and {TENSOR_FILE}")
        path = path.parent
    if not path.is_dir():
        raise LaminaError(f"adapter folder not found: {path}")
    design_path = path / DESIGN_FILE
    if not design_path.is_file():
        if (path / "adapter_config.json").is_file():
            raise LaminaError(f"{path}: no {DESIGN_FILE}; this looks like a PEFT adapter (use `lamina import-peft`)")
        raise LaminaError(f"{path}: no {DESIGN_FILE}, so this is not a lamina adapter folder")
    info = read_json(design_path, DESIGN_FILE)  # bad JSON, not UTF-8, nested too deeply: one line
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise LaminaError(f"{design_path}: not a lamina adapter description (no \"format\": \"{FORMAT}\")")
    if not isinstance(info.get("format_version"), int) or info["format_version"] > FORMAT_VERSION:
        raise LaminaError(f"{design_path}: format version {info.get('format_version')} is not readable by this lamina (reads <= {FORMAT_VERSION})")
    for key in ("design", "sha256"):
        if key not in info:
            raise LaminaError(f"{design_path}: the field '{key}' is missing")
    if info.get("tensor_file", TENSOR_FILE) != TENSOR_FILE:
        raise LaminaError(f"{design_path}: tensor_file is {json.dumps(info['tensor_file'])[:60]}; an adapter's tensors "
                          f"are its folder's {TENSOR_FILE} (lamina reads no other file)")
    check_info(info, design_path)
    try:  # the design's fields, before any tensor is read (their sizes against the base are checked at load)
        Design.from_dict(info["design"])
    except DesignError as err:
        raise DesignError(f"{design_path}: design.{err}") from None
    return info


def verify(directory: str | Path, info: dict) -> Path:
    """The tensor file of an adapter folder, checked against the checksum in design.json."""
    folder = Path(directory)
    folder = folder.parent if folder.is_file() else folder
    path = folder / TENSOR_FILE
    if not path.is_file():
        pickles = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise pickle_refusal(pickles[0])
        raise LaminaError(f"{folder}: {TENSOR_FILE} is missing")
    if _sha256(path) != info["sha256"]:
        raise LaminaError(f"{folder}: checksum mismatch: {TENSOR_FILE} is corrupt or was changed")
    return path


def read_tensors(directory: str | Path, info: dict) -> dict[str, torch.Tensor]:
    """The tensors of an adapter folder, after checking the file against the checksum in design.json."""
    import safetensors.torch

    path = verify(directory, info)
    try:
        return safetensors.torch.load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for a bad header
        raise LaminaError(f"{path}: not a valid safetensors file ({str(err).splitlines()[0]})") from None


def check_tensors(expected: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor]) -> None:
    """Strict: the file holds exactly the tensors the design builds, with the same shapes."""
    for key in sorted(expected):
        if key not in tensors:
            raise LaminaError(f"{TENSOR_FILE}: tensor '{key}' is missing (the design needs it)")
    for key in sorted(tensors):
        if key not in expected:
            raise LaminaError(f"{TENSOR_FILE}: unexpected tensor '{key}' (not part of the design)")
        if tuple(tensors[key].shape) != tuple(expected[key].shape):
            raise LaminaError(
                f"{TENSOR_FILE}: tensor '{key}' has shape {list(tensors[key].shape)}, the design needs {list(expected[key].shape)}"
            )
        if expected[key].is_floating_point() and not tensors[key].is_floating_point():
            raise LaminaError(f"{TENSOR_FILE}: tensor '{key}' is {str(tensors[key].dtype).removeprefix('torch.')}; the "
                              "design's tensors are floating point (a cast would silently round them)")


def load(model: nn.Module, directory: str | Path, name: str = "default") -> Report:
    """Rebuild a saved adapter on `model` under `name` (through `lamina.apply`) and restore its tensors;
    it becomes the active adapter. A full fine-tuning save restores the whole state dict."""
    info = read_info(directory)
    tensors = read_tensors(directory, info)
    design = Design.from_dict(info["design"])
    model_type = getattr(model.config, "model_type", None)
    if info.get("model_type") and info["model_type"] != model_type:
        raise LaminaError(f"this adapter was trained on a '{info['model_type']}' model; this model is '{model_type}'")
    _check_before_build(model, directory, info, design, tensors, name)
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    if info.get("dtype") and info["dtype"] != dtype:
        warnings.warn(f"adapter saved in {info['dtype']}, base model is {dtype}: tensors are cast", stacklevel=2)
    if info.get("full"):
        return _load_full(model, design, tensors, info)
    report = apply(model, stored_design(design), name=name)
    adapters = adapters_of(model)[name]
    try:
        check_tensors(adapters.state_dict(), tensors)
        adapters.load_state_dict(tensors, strict=True)
    except BaseException:
        delete_adapter(model, name)
        raise
    return report


def _check_before_build(model: nn.Module, directory, info: dict, design: Design, tensors: dict, name: str) -> None:
    """Before anything is built: finite tensors, the same depth and widths as the base the adapter was trained
    on, and (counted on the meta device) exactly as many stored values as the file holds."""
    where = Path(directory) / TENSOR_FILE
    check_finite(tensors, where)
    check_same_base(info, model.config, str(getattr(model.config, "_name_or_path", "") or "this model"), where)
    if not info.get("full"):
        check_stored_size(apply(model, stored_design(design), name=name, dry_run=True), tensors, where)


def _load_full(model: nn.Module, design: Design, tensors: dict, info: dict) -> Report:
    for alias, source in (info.get("tied") or {}).items():
        if source not in tensors:
            raise LaminaError(f"{TENSOR_FILE}: tied tensor '{alias}' refers to '{source}', which is not stored")
        tensors[alias] = tensors[source]
    check_tensors({k: v for k, v in model.state_dict().items() if not k.startswith(CONTAINER + ".")}, tensors)
    report = apply(model, design)
    model.load_state_dict(tensors, strict=False)  # names checked above; other adapters' tensors untouched
    return report


# --- the base an adapter names --------------------------------------------------------------------
def model_class(info: dict):
    """The transformers class named in design.json (only real transformers model classes)."""
    import transformers

    name = str(info.get("model_class") or "")
    cls = getattr(transformers, name, None) if name.isidentifier() else None
    if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
        raise LaminaError(f"design.json names an unknown model class '{name}'")
    return cls


def load_base(info: dict, base: str | None = None) -> nn.Module:
    """The base model an adapter was trained on (or `base`), in the saved dtype, eval mode."""
    name = base or info.get("base_model_name_or_path")
    if not name:
        raise LaminaError("design.json names no base model (it was built from a config): pass --base MODEL")
    cls = model_class(info)
    kwargs = {"dtype": getattr(torch, str(info.get("dtype") or "float32"))}
    labels = (info.get("base_config") or {}).get("id2label")
    if "Classification" in cls.__name__ and labels:
        kwargs["id2label"] = {int(k): v for k, v in labels.items()}
        kwargs["label2id"] = {v: int(k) for k, v in labels.items()}
    check_weights(str(name))  # a pickle-only folder is refused unopened; hub weights: safetensors only
    try:
        model, loading = cls.from_pretrained(str(name), use_safetensors=True, output_loading_info=True, **kwargs)
    except (OSError, ValueError) as err:
        raise LaminaError(f"cannot load the base model '{name}': {str(err).strip().splitlines()[0]}") from None
    check_loaded(model, loading, str(name))
    return model.eval()
