"""Where a command may write: checked before anything is created, so a refused command leaves nothing behind.

Rules, for every command that writes:
- an output never replaces an input, and never sits inside an input folder (`predict -i a.jsonl -o a.jsonl`,
  `export-peft -a X -o X`, a run folder inside the data folder);
- an output folder must be new or empty. An existing one is reused only with `--overwrite` (or `--resume`
  for a run), and only when it holds an earlier output of the same kind (a run folder, a PEFT adapter...):
  `--overwrite` never takes over an unrelated folder;
- an output file (predictions) must not be an existing folder; an existing file needs `--overwrite`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Iterable

from lamina.errors import LaminaError

# what marks a folder as an earlier output of each kind (any one of these names inside it)
KINDS = {
    "run": ("results.json", "design.json", "train.log", "checkpoints"),
    "adapter": ("design.json", "adapter.safetensors"),
    "peft": ("adapter_config.json", "adapter_model.safetensors"),
    "merged": ("config.json",),
    "report": ("report.md", "report.html"),
    "search": ("search.db", "search.json", "trials.log", "design.yaml"),
    "suggest": ("design.yaml", "signals.json", "suggest.md"),
}
LABEL = {"run": "a lamina run folder", "adapter": "a lamina adapter", "peft": "a PEFT adapter",
         "merged": "a merged model", "report": "a lamina report", "search": "a lamina search output",
         "suggest": "a lamina suggestion"}


def local(path) -> Path | None:
    """The resolved path of an existing local file or folder; None for a Hub id or a missing path."""
    if path is None:
        return None
    candidate = Path(str(path)).expanduser()
    return candidate.resolve() if candidate.exists() else None


def resolve_model(name: str) -> str:
    """A local model folder as its absolute path (so design.json / results.json name it unambiguously from
    any working directory); a Hub id as given."""
    found = local(name)
    return str(found) if found is not None else str(name)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_not_an_input(output: str | Path, inputs: Iterable, flag: str = "--output") -> Path:
    """`output` must not be one of `inputs` nor lie inside an input folder. Returns the resolved output."""
    out = Path(output).expanduser().resolve()
    for item in inputs:
        source = local(item)
        if source is None:
            continue
        if out == source or (out.exists() and os.path.samefile(out, source)):  # a hard link is the same file
            raise LaminaError(f"{flag} {output} is an input of this command ({item}); write the output somewhere else")
        if source.is_dir() and _inside(out, source):
            raise LaminaError(f"{flag} {output} lies inside the input folder {item}; write the output somewhere else")
    return out


def is_kind(folder: Path, kind: str) -> bool:
    return any((folder / name).exists() for name in KINDS[kind])


def check_output_folder(output: str | Path, kind: str, inputs: Iterable = (), overwrite: bool = False,
                        flag: str = "--output", resume: bool = False) -> Path:
    """An output folder: not an input, not inside one, not a file; new or empty, or (with --overwrite or
    --resume) an earlier output of the same kind. Returns the resolved path; creates nothing."""
    out = check_not_an_input(output, inputs, flag)
    if out.exists() and not out.is_dir():
        raise LaminaError(f"{flag} {output} is an existing file; give a folder path")
    if not out.is_dir() or not any(out.iterdir()):
        return out
    if not (overwrite or resume):
        raise LaminaError(f"{flag} {output} already exists and is not empty; pass --overwrite to replace "
                          f"{'the earlier run' if kind == 'run' else 'what is there'}, or choose a new folder")
    if not is_kind(out, kind):
        raise LaminaError(f"{flag} {output} is not empty and does not hold {LABEL[kind]}; refusing to write into "
                          f"it{' even with --overwrite' if overwrite else ''}; choose a new folder")
    if resume:
        check_links(out, flag)
    return out


def check_links(out: Path, flag: str = "--output") -> None:
    """A resumed output writes through the links in it: a link into another lamina output (`checkpoints` ->
    someone else's run) would write there. Links elsewhere (checkpoints on a scratch disk) are the user's."""
    for entry in out.iterdir():
        if not entry.is_symlink():
            continue
        target = entry.resolve()
        for folder in list(target.parents)[:3]:  # the run holding a linked checkpoints folder is its parent
            if folder == out:
                break
            if any(is_kind(folder, k) for k in ("run", "search", "suggest", "adapter")):
                raise LaminaError(f"{flag} {out}: '{entry.name}' links into another lamina output ({folder}); "
                                  "resuming would write there; replace the link with a folder")


def check_output_file(output: str | Path, inputs: Iterable = (), overwrite: bool = False, flag: str = "--output") -> Path:
    out = check_not_an_input(output, inputs, flag)
    if out.is_dir():
        raise LaminaError(f"{flag} {output} is a folder; give a file path for the output")
    if out.exists() and not overwrite:
        raise LaminaError(f"{flag} {output} already exists; pass --overwrite to replace it, or choose a new file")
    return out


def replace_folder(output: str | Path, build: Callable[[Path], object]):
    """Run `build(output)` with an existing `output` folder set aside: on success the old folder is deleted,
    on failure whatever the build left is removed and the old folder is put back. Returns build's value."""
    import tempfile

    out = Path(output).resolve()
    if not out.exists():
        return build(out)
    aside = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
    old = aside / "old"
    os.rename(out, old)
    try:
        value = build(out)
    except BaseException:
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.rename(old, out)
        aside.rmdir()
        raise
    shutil.rmtree(aside, ignore_errors=True)
    return value
