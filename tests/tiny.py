"""Tiny random models of every supported family, built from configs (no downloads)."""

from __future__ import annotations

import torch
import transformers as T

HIDDEN, LAYERS, VOCAB = 32, 4, 120


def config(family: str):
    common = dict(vocab_size=VOCAB)
    if family in ("bert", "roberta", "electra", "deberta-v2"):
        cls = {"bert": T.BertConfig, "roberta": T.RobertaConfig, "electra": T.ElectraConfig, "deberta-v2": T.DebertaV2Config}[family]
        extra = dict(embedding_size=HIDDEN) if family == "electra" else {}
        if family == "roberta":
            extra.update(pad_token_id=1, bos_token_id=0, eos_token_id=2)
        return cls(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=4, intermediate_size=37,
                   max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **extra, **common)
    if family == "t5":
        return T.T5Config(d_model=HIDDEN, d_kv=8, d_ff=37, num_layers=2, num_decoder_layers=2, num_heads=4,
                          dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, **common)
    if family == "bart":
        return T.BartConfig(d_model=HIDDEN, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                            decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=64,
                            dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, pad_token_id=0, bos_token_id=1,
                            eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=None, **common)
    if family == "gpt2":
        return T.GPT2Config(n_embd=HIDDEN, n_layer=LAYERS, n_head=4, n_positions=64, resid_pdrop=0.0, embd_pdrop=0.0,
                            attn_pdrop=0.0, bos_token_id=1, eos_token_id=2, pad_token_id=0, **common)
    cls = {"llama": T.LlamaConfig, "mistral": T.MistralConfig, "qwen2": T.Qwen2Config}[family]
    return cls(hidden_size=HIDDEN, intermediate_size=37, num_hidden_layers=LAYERS, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, **common)


FAMILIES = ("bert", "roberta", "electra", "deberta-v2", "t5", "bart", "gpt2", "llama", "mistral", "qwen2")
SEQ2SEQ = ("t5", "bart")  # encoder-decoder families: built as text-to-text models


def model(family: str, seed: int = 0, num_labels: int = 3):
    torch.manual_seed(seed)
    cfg = config(family)
    if family in SEQ2SEQ:
        m = T.AutoModelForSeq2SeqLM.from_config(cfg)
    else:
        cfg.num_labels = num_labels
        m = T.AutoModelForSequenceClassification.from_config(cfg)
    return m.eval()


def batch(family: str, seed: int = 1, size: int = 2, length: int = 9, pad_last: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (size, length), generator=g)
    mask = torch.ones(size, length, dtype=torch.long)
    if pad_last:
        ids[-1, length - pad_last:] = 0 if family != "roberta" else 1
        mask[-1, length - pad_last:] = 0
    inputs = dict(input_ids=ids, attention_mask=mask)
    if family in SEQ2SEQ:
        inputs["decoder_input_ids"] = torch.randint(3, VOCAB, (size, 5), generator=g)
    return inputs


def logits(m, inputs):
    return m(**inputs).logits


def perturb(model_or_params, seed: int = 3) -> None:
    """Move every trained tensor (stands in for training: LoRA B and adapter up-projections start at
    zero). Takes a model (its trainable parameters) or an iterable of parameters."""
    params = model_or_params.parameters() if isinstance(model_or_params, torch.nn.Module) else model_or_params
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)


def padded_logits(m, family: str):
    """Logits of a fixed batch whose last row is padded, without gradients."""
    with torch.no_grad():
        return logits(m, batch(family, pad_last=2))


def base_state(m) -> dict:
    """Copies of the base model's own tensors (lamina's adapter tensors left out)."""
    return {k: v.clone() for k, v in m.state_dict().items() if not k.startswith("lamina_adapters")}
