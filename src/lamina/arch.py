"""Declarative per-family layer maps: where the blocks are and what their parts are called.

A new architecture is one `Family` entry. Paths are relative to one block and may use `*` for one
path component (T5's FFN sits at `layer.1` in encoder blocks and `layer.2` in decoder blocks).
Fused projections are written `path[i/n]`: part i of n equal output slices (GPT-2's `c_attn` = q|k|v).

Layer index space: one index per block in forward order; for encoder-decoder models the encoder blocks
come first (0..E-1), then the decoder blocks (E..E+D-1). A group may instead name a stack.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from dataclasses import dataclass, field

import torch
from torch import nn

from lamina.errors import DesignError, LaminaError

CANONICAL_TARGETS = ("q", "k", "v", "o", "ffn_in", "ffn_out")


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]
    stacks: tuple[tuple[str, str], ...]  # (stack name, dotted suffix of the ModuleList holding the blocks)
    targets: dict[str, tuple[str, ...]]  # canonical target -> block-relative paths (all that exist are used)
    attention: tuple[str, ...]  # self-attention modules (prefix keys/values go there)
    norms: tuple[str, ...]  # LayerNorm / RMSNorm modules inside a block
    prompt_module: str = ""  # "" = the backbone (model.base_model); else a path from the model root
    prompt_insert_at: int = 0  # 1 keeps [CLS]-style first tokens first
    prefix_supported: bool = True


_BERT_LIKE = dict(
    targets={
        "q": ("attention.self.query",), "k": ("attention.self.key",), "v": ("attention.self.value",),
        "o": ("attention.output.dense",), "ffn_in": ("intermediate.dense",), "ffn_out": ("output.dense",),
    },
    attention=("attention.self",),
    norms=("attention.output.LayerNorm", "output.LayerNorm"),
    prompt_insert_at=1,
)

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("bert", ("bert", "electra"), (("encoder", "encoder.layer"),), **_BERT_LIKE),
        Family("roberta", ("roberta", "xlm-roberta"), (("encoder", "encoder.layer"),), **_BERT_LIKE),
        Family(
            "deberta-v2", ("deberta-v2",), (("encoder", "encoder.layer"),),
            targets={
                "q": ("attention.self.query_proj",), "k": ("attention.self.key_proj",),
                "v": ("attention.self.value_proj",), "o": ("attention.output.dense",),
                "ffn_in": ("intermediate.dense",), "ffn_out": ("output.dense",),
            },
            attention=("attention.self",),
            norms=("attention.output.LayerNorm", "output.LayerNorm"),
            prompt_insert_at=1,
            prefix_supported=False,  # disentangled attention does not go through the attention interface
        ),
        Family(
            "t5", ("t5", "mt5"), (("encoder", "encoder.block"), ("decoder", "decoder.block")),
            targets={
                "q": ("layer.0.SelfAttention.q",), "k": ("layer.0.SelfAttention.k",),
                "v": ("layer.0.SelfAttention.v",), "o": ("layer.0.SelfAttention.o",),
                "ffn_in": ("layer.*.DenseReluDense.wi", "layer.*.DenseReluDense.wi_0", "layer.*.DenseReluDense.wi_1"),
                "ffn_out": ("layer.*.DenseReluDense.wo",),
            },
            attention=("layer.0.SelfAttention",),
            norms=("layer.*.layer_norm",),
            prompt_module="encoder",
        ),
        Family(
            "bart", ("bart", "mbart"), (("encoder", "encoder.layers"), ("decoder", "decoder.layers")),
            targets={
                "q": ("self_attn.q_proj",), "k": ("self_attn.k_proj",), "v": ("self_attn.v_proj",),
                "o": ("self_attn.out_proj",), "ffn_in": ("fc1",), "ffn_out": ("fc2",),
            },
            attention=("self_attn",),
            norms=("self_attn_layer_norm", "encoder_attn_layer_norm", "final_layer_norm"),
            prompt_module="model.encoder",
        ),
        Family(
            "gpt2", ("gpt2",), (("decoder", "h"),),
            targets={
                "q": ("attn.c_attn[0/3]",), "k": ("attn.c_attn[1/3]",), "v": ("attn.c_attn[2/3]",),
                "o": ("attn.c_proj",), "ffn_in": ("mlp.c_fc",), "ffn_out": ("mlp.c_proj",),
            },
            attention=("attn",),
            norms=("ln_1", "ln_2"),
        ),
        Family(
            "llama", ("llama", "mistral", "qwen2"), (("decoder", "layers"),),
            targets={
                "q": ("self_attn.q_proj",), "k": ("self_attn.k_proj",), "v": ("self_attn.v_proj",),
                "o": ("self_attn.o_proj",), "ffn_in": ("mlp.gate_proj", "mlp.up_proj"), "ffn_out": ("mlp.down_proj",),
            },
            attention=("self_attn",),
            norms=("input_layernorm", "post_attention_layernorm"),
        ),
    )
}


def is_projection(module: nn.Module) -> bool:
    """nn.Linear or a GPT-2 style Conv1D (weight stored [in, out])."""
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


def in_out(module: nn.Module) -> tuple[int, int]:
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    return module.weight.shape[0], module.weight.shape[1]  # Conv1D


@dataclass(frozen=True)
class Site:
    """One projection inside a block, or one output slice of a fused projection."""

    path: str  # block-relative module path
    part: int = 0
    parts: int = 1

    @property
    def key(self) -> str:
        """A ModuleDict-safe name: 'attn.c_attn[0/3]' -> 'attn-c_attn-p0of3'."""
        tail = f"-p{self.part}of{self.parts}" if self.parts > 1 else ""
        return self.path.replace(".", "-") + tail

    def out_slice(self, out_features: int) -> slice:
        size = out_features // self.parts
        return slice(self.part * size, (self.part + 1) * size)


def _parse_site(text: str) -> Site:
    if text.endswith("]") and "[" in text:
        path, _, spec = text[:-1].partition("[")
        part, _, parts = spec.partition("/")
        return Site(path, int(part), int(parts))
    return Site(text)


@dataclass
class Layer:
    index: int  # global layer index
    stack: str
    local_index: int
    path: str  # module path of the block from the model root
    block: nn.Module


@dataclass
class ModelMap:
    """A model resolved against its family: its blocks in global index order and its head modules."""

    family: Family
    layers: list[Layer]
    stacks: dict[str, int]
    head: list[str] = field(default_factory=list)  # module paths (from the root) of the task head
    # what the model can hold, for the methods' size checks: the longest sequence its position embeddings
    # cover (None: no absolute limit, as in T5)
    positions: int | None = None

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def global_index(self, stack: str | None, local: int) -> int:
        if stack is None:
            return local
        offset = 0
        for name, count in self.stacks.items():
            if name == stack:
                return offset + local
            offset += count
        raise DesignError(f"this model has no '{stack}' stack")

    def find(self, block: nn.Module, pattern: str) -> list[tuple[str, nn.Module]]:
        """Block-relative modules matching a path pattern (`*` = one component)."""
        if "*" not in pattern:
            try:
                return [(pattern, block.get_submodule(pattern))]
            except AttributeError:
                return []
        return [(n, m) for n, m in block.named_modules() if n and fnmatch.fnmatchcase(n, pattern) and n.count(".") == pattern.count(".")]

    def sites(self, layer: Layer, target: str) -> list[Site]:
        """Resolve a canonical or native target name to the projection sites of one block."""
        if target in self.family.targets:
            found = []
            for spec in self.family.targets[target]:
                site = _parse_site(spec)
                found += [Site(name, site.part, site.parts) for name, m in self.find(layer.block, site.path) if is_projection(m)]
            return found
        matches = [n for n, m in layer.block.named_modules() if is_projection(m) and (n == target or n.endswith("." + target))]
        if len(matches) > 1:
            raise DesignError(f"target '{target}' is ambiguous in {self.family.name} blocks: {', '.join(matches)}")
        return [Site(n) for n in matches]

    def known_targets(self) -> set[str]:
        names = set(CANONICAL_TARGETS)
        for layer in self.layers[:1] + self.layers[-1:]:
            for n, m in layer.block.named_modules():
                if is_projection(m):
                    names.add(n)
                    names.add(n.rsplit(".", 1)[-1])
        return names

    def all_projections(self, layer: Layer) -> list[Site]:
        """Every projection of the block, fused ones split into their canonical slices."""
        fused = {}
        for target in ("q", "k", "v"):
            for spec in self.family.targets.get(target, ()):
                site = _parse_site(spec)
                if site.parts > 1:
                    fused.setdefault(site.path, []).append(site)
        out = []
        for n, m in layer.block.named_modules():
            if is_projection(m):
                out += fused.get(n, [Site(n)])
        return out

    def norms(self, layer: Layer) -> list[tuple[str, nn.Module]]:
        found = []
        for pattern in self.family.norms:
            found += self.find(layer.block, pattern)
        return found


def family_of(config) -> Family:
    model_type = getattr(config, "model_type", None)
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    supported = sorted({t for f in FAMILIES.values() for t in f.model_types})
    raise DesignError(f"unsupported model type '{model_type}'; supported: {', '.join(supported)}")


def map_model(model: nn.Module) -> ModelMap:
    family = family_of(model.config)
    named = dict(model.named_modules())
    layers, stacks = [], {}
    for stack, suffix in family.stacks:
        hits = [n for n, m in named.items() if isinstance(m, nn.ModuleList) and (n == suffix or n.endswith("." + suffix))]
        if len(hits) > 1:
            raise DesignError(f"found {len(hits)} '{suffix}' block lists in this {family.name} model: {hits}")
        if not hits:
            continue  # e.g. T5EncoderModel has no decoder stack
        blocks = named[hits[0]]
        stacks[stack] = len(blocks)
        for local, block in enumerate(blocks):
            layers.append(Layer(len(layers), stack, local, f"{hits[0]}.{local}", block))
    if not layers:
        raise DesignError(f"no transformer blocks found in this {family.name} model")
    return ModelMap(family, layers, stacks, _head_modules(model), max_tokens(model.config))


def max_tokens(config) -> int | None:
    """The longest input the model's position embeddings can hold (None: no absolute limit)."""
    kind = getattr(config, "model_type", "")
    if kind in ("t5", "mt5"):
        return None
    if kind == "gpt2":
        return getattr(config, "n_positions", None)
    if kind == "deberta-v2" and not getattr(config, "position_biased_input", True):
        return None
    limit = getattr(config, "max_position_embeddings", None)
    if limit and kind in ("roberta", "xlm-roberta"):
        limit -= (getattr(config, "pad_token_id", 1) or 1) + 1  # positions start after the padding index
    return limit


def _head_modules(model: nn.Module) -> list[str]:
    """Top-level task-head modules (classifier, QA span head, ContextPooler; plus the backbone's pooler
    when there is a head). LM heads (vocab-sized or tied to the embeddings) are not task heads."""
    base = getattr(model, "base_model", model)
    if base is model:
        return []
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    vocab = getattr(model.config, "vocab_size", None)
    head = []
    for name, module in model.named_children():
        if module is base or name == "lamina_adapters" or not any(True for _ in module.parameters()):
            continue  # lamina_adapters: the adapters already on the model are no task head
        weights = [p for p in module.parameters()]
        if embed is not None and any(p is embed.weight for p in weights):
            continue
        if isinstance(module, nn.Linear) and module.out_features == vocab:
            continue
        head.append(name)
    pooler = getattr(base, "pooler", None)
    if head and isinstance(pooler, nn.Module) and any(True for _ in pooler.parameters()):
        prefix = next(n for n, m in model.named_children() if m is base)
        head.append(f"{prefix}.pooler")
    return head


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def head_params(model: nn.Module, mmap: ModelMap) -> int:
    return sum(p.numel() for path in mmap.head for p in model.get_submodule(path).parameters())


def hidden_size(model: nn.Module) -> int:
    config = model.config
    for attr in ("hidden_size", "d_model", "n_embd"):
        if getattr(config, attr, None):
            return int(getattr(config, attr))
    raise DesignError("cannot tell the hidden size of this model")


def is_meta(model: nn.Module) -> bool:
    return any(p.device == torch.device("meta") for p in model.parameters())


def meta_model(config, head: str = "classification", num_labels: int = 2):
    """The model skeleton on the meta device: shapes only, so a 70B config answers in about a second."""
    import transformers as T

    family_of(config)  # unsupported model types fail here with the list of supported ones
    with torch.device("meta"):
        if config.model_type in ("t5", "mt5"):
            return T.AutoModelForSeq2SeqLM.from_config(config)
        if head == "none":
            return T.AutoModel.from_config(config)
        config.num_labels = num_labels
        cls = T.AutoModelForQuestionAnswering if head == "qa" else T.AutoModelForSequenceClassification
        return cls.from_config(config)


def config_from(model: str):
    """An HF config from a hub id, a local model folder, or a config.json file."""
    from transformers import AutoConfig

    path = Path(model)
    if path.suffix == ".json":
        if not path.is_file():
            from lamina.util import not_a_file

            raise LaminaError(f"config file {not_a_file(path)}: {path}")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise LaminaError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None
        if "model_type" not in data:
            raise LaminaError(f"{path}: no 'model_type' field")
        return AutoConfig.for_model(**data)
    try:
        return AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as err:
        raise LaminaError(f"cannot load a config from '{model}': {str(err).splitlines()[0]}") from None
