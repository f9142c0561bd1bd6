"""A small world of valid inputs for the hostile-input tests (tests/test_fuzz_cli.py): tiny random BERT
model folders (4 and 8 layers, with an offline tokenizer), SST-2 / text / SQuAD data in their real
formats, saved lamina adapters (LoRA, BitFit, on the 4- and the 8-layer model), a PEFT export, a search
record, and crafted pickles whose unpickling would create the file `UNPICKLED` (so a test can tell that
no pickle was ever opened). Everything is built from configs and written here: no downloads.
"""

from __future__ import annotations

import json
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers as T

REPO = Path(__file__).resolve().parents[1]
WORDS = "good great fine bad awful poor the a movie film plot actor very is was".split()


class _Trap:
    """Unpickling this creates the marker file (builtins.open(marker, 'w')); torch's weights_only loader
    refuses it, the full unpickler runs it."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@dataclass
class World:
    root: Path
    model: Path  # BERT, 4 layers, hidden 32, 4 heads, 64 positions, 2 labels + tokenizer (safetensors)
    model8: Path  # the same with 8 layers
    pickle_model: Path  # config + tokenizer + pytorch_model.bin (a trap), no safetensors
    glue: Path  # GLUE root: SST-2/{train,dev}.tsv, STS-B/{train,dev}.tsv
    text: Path  # train.jsonl / dev.jsonl with text + label
    squad: Path  # train-v1.1.json / dev-v1.1.json
    adapter: Path  # lora r=2 on q,v, all 4 layers, trained head (random values), base = model
    bitfit: Path  # bitfit adapter on model (not exportable to PEFT)
    adapter8: Path  # lora on the 8-layer model
    peft: Path  # `adapter` exported to the PEFT format
    record: Path  # folder holding a real search.json (docs/search)
    marker: Path  # must never exist

    def trap(self, path: Path) -> Path:
        """Write a pickle trap at `path` (its unpickling creates `marker`)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(_Trap(self.marker)))
        return path

    def copy(self, what: Path, to: Path) -> Path:
        shutil.copytree(what, to)
        return to

    def edit_json(self, path: Path, fn) -> Path:
        data = json.loads(path.read_text())
        path.write_text(json.dumps(fn(data)))
        return path


def _model_dir(folder: Path, layers: int, vocab: Path, head: str = "classification") -> Path:
    folder.mkdir(parents=True)
    T.BertTokenizerFast(vocab=str(vocab)).save_pretrained(folder)
    config = T.BertConfig(vocab_size=len(WORDS) + 5, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                          intermediate_size=37, max_position_embeddings=64, num_labels=2,
                          hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    model = T.BertForQuestionAnswering(config) if head == "qa" else T.BertForSequenceClassification(config)
    model.save_pretrained(folder)
    return folder


def _save_adapter(model_dir: Path, design: str, out: Path) -> Path:
    import lamina

    model = T.AutoModelForSequenceClassification.from_pretrained(str(model_dir))
    lamina.apply(model, design)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01)
    lamina.save(model, out)
    return out


def _rows(n: int, seed: int) -> list[tuple[str, int]]:
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = [rng.choice(WORDS[6:]) for _ in range(4)] + [rng.choice(WORDS[:3] if label else WORDS[3:6])]
        rng.shuffle(words)
        out.append((" ".join(words), label))
    return out


def build(root: Path) -> World:
    root.mkdir(parents=True, exist_ok=True)
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    model = _model_dir(root / "model", 4, vocab)
    model8 = _model_dir(root / "model8", 8, vocab)
    pickle_model = root / "pickle-model"
    pickle_model.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(model / name, pickle_model / name)
    marker = root / "UNPICKLED"

    glue = root / "glue"
    for task, n in (("SST-2", 0), ("STS-B", 1)):
        (glue / task).mkdir(parents=True)
        for split, count in (("train.tsv", 16), ("dev.tsv", 8)):
            rows = _rows(count, n + len(split))
            if task == "SST-2":
                lines = ["sentence\tlabel"] + [f"{t}\t{y}" for t, y in rows]
            else:
                head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
                lines = [head] + [f"{i}\tg\tf\t2012\t{i}\ts\ts\t{t}\t{t}\t{2.5 + y}" for i, (t, y) in enumerate(rows)]
            (glue / task / split).write_text("\n".join(lines) + "\n")
    text = root / "text"
    text.mkdir()
    for split, count in (("train.jsonl", 12), ("dev.jsonl", 6)):
        (text / split).write_text("".join(json.dumps({"text": t, "label": "pos" if y else "neg"}) + "\n"
                                          for t, y in _rows(count, count)))
    squad = root / "squad"
    squad.mkdir()
    context = "the film was good and the actor was great"
    for split in ("train-v1.1.json", "dev-v1.1.json"):
        data = {"version": "1.1", "data": [{"title": f"t{a}", "paragraphs": [{"context": context, "qas": [
            {"id": f"{split[:3]}{a}-{q}", "question": "how was the film", "answers": [{"text": "good", "answer_start": 13}]}
            for q in range(2)]}]} for a in range(2)]}
        (squad / split).write_text(json.dumps(data))

    world = World(root=root, model=model, model8=model8, pickle_model=pickle_model, glue=glue, text=text, squad=squad,
                  adapter=_save_adapter(model, "lora:r=2", root / "adapter"),
                  bitfit=_save_adapter(model, "bitfit", root / "bitfit"),
                  adapter8=_save_adapter(model8, "lora:r=2", root / "adapter8"),
                  peft=root / "peft", record=root / "record", marker=marker)
    world.trap(pickle_model / "pytorch_model.bin")
    from lamina.peft_format import export_peft

    export_peft(world.adapter, world.peft)
    world.record.mkdir()
    shutil.copy(REPO / "docs" / "search" / "search-noprune.json", world.record / "search.json")
    return world


def put(folder: Path, name: str, content) -> Path:
    """Write `content` (text, bytes, or an object as JSON) to folder/name, making the folders on the way."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `folders`: path -> (size, mtime) (folders: size -1)."""
    out = {}
    for folder in folders:
        for path in [folder, *folder.rglob("*")]:
            stat = path.lstat()
            out[str(path)] = (-1 if path.is_dir() else stat.st_size, 0 if path.is_dir() else stat.st_mtime_ns)
    return out
