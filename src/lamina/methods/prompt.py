"""Prompt tuning: `length` soft tokens inserted into the input embeddings, mask widened to match.

The tokens go in after the first token for [CLS]-style encoders (so the pooler and classification
heads still read [CLS]) and in front for decoders and T5's encoder. They are cut out of the
backbone's output again, so sequence lengths, QA offset mappings and token-level heads are unchanged.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from lamina.design import Prompt
from lamina.methods.base import BuildContext


class SoftPrompt(nn.Module):
    def __init__(self, prompt: Prompt, embeddings: nn.Embedding, seed: int = 0):
        super().__init__()
        weight = embeddings.weight
        if prompt.init == "vocab" and weight.device.type != "meta":
            ids = torch.randint(0, weight.shape[0], (prompt.length,), generator=torch.Generator().manual_seed(seed))
            init = weight.detach()[ids].clone()
        else:
            init = torch.randn(prompt.length, weight.shape[1], device=weight.device) * 0.02
        self.embedding = nn.Parameter(init.to(weight.dtype))


def prompt_module(ctx: BuildContext) -> nn.Module:
    family = ctx.mmap.family
    return ctx.model.get_submodule(family.prompt_module) if family.prompt_module else ctx.model.base_model


def attach_prompt(soft: SoftPrompt, ctx: BuildContext) -> None:
    target = prompt_module(ctx)
    at = ctx.mmap.family.prompt_insert_at
    embed = target.get_input_embeddings() if hasattr(target, "get_input_embeddings") else target.embed_tokens
    signature = inspect.signature(target.forward)
    runtime, name = ctx.runtime, ctx.name

    def pre_hook(_module, args, kwargs):
        if not runtime.is_active(name):
            return None
        bound = dict(signature.bind_partial(*args, **kwargs).arguments)
        bound.update(bound.pop("kwargs", {}))
        ids, embeds = bound.get("input_ids"), bound.get("inputs_embeds")
        cache = bound.get("cache", bound.get("past_key_values"))
        soft.__dict__["_inserted"] = False
        if cache is not None and hasattr(cache, "get_seq_length") and cache.get_seq_length() > 0:
            return _continuation(bound, soft.embedding.shape[0], at, runtime)  # the prompt is in the cache
        if embeds is None:
            embeds = embed(ids)
        soft.__dict__["_inserted"] = True
        batch, length = embeds.shape[0], soft.embedding.shape[0]
        tokens = soft.embedding.to(embeds.dtype).unsqueeze(0).expand(batch, -1, -1)
        bound["input_ids"], bound["inputs_embeds"] = None, torch.cat([embeds[:, :at], tokens, embeds[:, at:]], dim=1)
        for key, fill in (("attention_mask", 1), ("token_type_ids", 0)):
            value = bound.get(key)
            if value is not None and value.dim() == 2:
                pad = torch.full((batch, length), fill, dtype=value.dtype, device=value.device)
                bound[key] = torch.cat([value[:, :at], pad, value[:, at:]], dim=1)
        if bound.get("attention_mask") is not None:
            runtime.mask = bound["attention_mask"]
        bound.pop("position_ids", None)  # positions are recomputed for the longer sequence
        bound.pop("self", None)
        return (), bound

    def forward_hook(_module, _args, output):
        if not runtime.is_active(name) or not hasattr(output, "last_hidden_state") or not soft.__dict__.get("_inserted"):
            return output
        hidden = output.last_hidden_state
        length = soft.embedding.shape[0]
        if hidden.shape[1] <= length:
            return output
        output.last_hidden_state = torch.cat([hidden[:, :at], hidden[:, at + length :]], dim=1)
        if getattr(output, "hidden_states", None) is not None:
            output.hidden_states = tuple(torch.cat([h[:, :at], h[:, at + length :]], dim=1) for h in output.hidden_states)
        return output

    ctx.hook(target, pre_hook, pre=True, with_kwargs=True)
    ctx.hook(target, forward_hook)


def _continuation(bound: dict, length: int, at: int, runtime):
    """A generation step on a cache that holds the prompt tokens: the step's mask gets the prompt's
    columns, and its positions count them (dropped, so the model counts from the cache's length)."""
    mask = bound.get("attention_mask")
    if mask is not None and mask.dim() == 2:
        ones = torch.ones(mask.shape[0], length, dtype=mask.dtype, device=mask.device)
        bound["attention_mask"] = runtime.mask = torch.cat([mask[:, :at], ones, mask[:, at:]], dim=1)
    bound.pop("position_ids", None)
    bound.pop("self", None)
    return (), bound
