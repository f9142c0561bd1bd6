"""Merged export: a plain Hugging Face model folder with every mergeable part folded into the weights,
loadable without lamina. The merging itself is `lamina.merging.merge_parts` (the one merge loop)."""

from __future__ import annotations

import shutil
from pathlib import Path

from lamina.checks import has_tokenizer_files
from lamina.design import Design
from lamina.errors import LaminaError
from lamina.inject import CONTAINER, adapters_of, clear_full, delete_adapter
from lamina.io import REMAINING_DIR, adapter_info, load, load_base, read_info, stored_tensors, verify, write_adapter_dir
from lamina.merging import merge_parts
from lamina.methods.head import head_key
from lamina.util import publish, temp_dir_next_to


def _remaining(design: Design, keep: dict[int, list], tensors: dict) -> tuple[Design, dict]:
    """The unmerged parts as their own design (groups renumbered) and their tensors."""
    groups, out = [], {}
    for g, strategies in sorted(keep.items()):
        new = len(groups)
        groups.append(design.groups[g].model_copy(update={"strategies": tuple(strategies)}))
        for s in strategies:
            old_prefix = f"groups.{g}.{s.method}."
            out.update({f"groups.{new}.{s.method}." + k[len(old_prefix):]: v for k, v in tensors.items() if k.startswith(old_prefix)})
    if design.prompt is not None:
        out.update({k: v for k, v in tensors.items() if k.startswith("prompt.")})
    name = f"{design.name or 'design'}-unmerged"
    return design.model_copy(update={"groups": tuple(groups), "train_head": False, "budget": None, "name": name}), out


def _save_tokenizer(base: str, out: Path) -> bool:
    """Save the base's tokenizer next to the merged model when there is one (local folder or hub id)."""
    path = Path(base)
    if path.is_dir() and not has_tokenizer_files(path):
        return False
    try:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(base).save_pretrained(out)
        return True
    except Exception:  # no tokenizer next to the base: the merged model is still complete
        return False


def export_merged(adapter_dir: str | Path, output: str | Path, *, base: str | None = None, strict: bool = False) -> dict:
    """Load the base named in design.json (or `base`), load the adapter, merge what merges, copy a trained
    task head into the real head, and write a plain Hugging Face model folder (safetensors, tokenizer
    when the base has one) that loads without lamina. Unmergeable parts (adapters, prefix, prompt, gated
    LoRA, BitFit on bias-less modules) are refused with `strict`, otherwise written as a reduced lamina
    adapter in `output/lamina-adapter` whose base is the merged model. Returns what was merged and kept."""
    info = read_info(adapter_dir)
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise LaminaError(f"output {output} already exists and is not an empty folder")
    verify(adapter_dir, info)  # a corrupt folder fails before a (possibly large) base model is loaded
    model = load_base(info, base)
    name = str(info.get("adapter_name") or "default")
    load(model, adapter_dir, name=name)
    merged, kept, remaining = [], [], None
    if info.get("full"):
        merged.append("full fine-tuning (the whole model)")
    else:
        adapters = adapters_of(model)[name]
        ctx, design, keep = adapters.context, adapters.design, {}
        for part in merge_parts(adapters):
            (kept if part.kept else merged).append(f"{part.label}: {part.kept}" if part.kept else part.label)
            if part.kept:
                keep.setdefault(part.group, []).append(part.strategy)
        if design.prompt is not None:
            kept.append("prompt tuning (extra input tokens)")
        if strict and kept:
            raise LaminaError(f"--strict: these parts cannot be merged: {'; '.join(kept)}")
        if design.train_head and ctx.mmap.head:
            for path in ctx.mmap.head:
                model.get_submodule(path).load_state_dict(adapters.heads[head_key(path)].state_dict())
            merged.append("task head (" + ", ".join(ctx.mmap.head) + ")")
        if kept:
            remaining = _remaining(design, keep, stored_tensors(adapters))
        delete_adapter(model, name)
    clear_full(model)
    leftover = [k for k in model.state_dict() if k.startswith(CONTAINER)]
    if leftover:  # pragma: no cover - delete_adapter removes the container with its last adapter
        raise LaminaError(f"internal: lamina tensors left in the merged model: {leftover[:3]}")
    tmp = temp_dir_next_to(output)
    try:
        model.save_pretrained(tmp)
        tokenizer = _save_tokenizer(str(base or info["base_model_name_or_path"]), tmp)
        if remaining is not None:
            design_left, tensors_left = remaining
            left_info = adapter_info(model, name, design_left, False, tensors_left, base=str(output.resolve()))
            write_adapter_dir(tmp / REMAINING_DIR, tensors_left, left_info)
        publish(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {
        "output": output,
        "merged": merged,
        "kept": kept,
        "remaining": output / REMAINING_DIR if remaining is not None else None,
        "tokenizer": tokenizer,
    }
