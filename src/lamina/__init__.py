"""lamina: layer-wise, budget-aware parameter-efficient fine-tuning for Hugging Face transformers."""

from lamina.design import Adapter, BitFit, Budget, Design, DesignError, Group, LayerNormTuning, LoRA, Prefix, Prompt
from lamina.inject import Report, apply, collect_gates, delete_adapter, gate_values, set_active, trainable_names
from lamina.merge import merge, unmerge

__version__ = "0.1.0"

__all__ = [
    "Adapter", "BitFit", "Budget", "Design", "DesignError", "Group", "LayerNormTuning", "LoRA", "Prefix", "Prompt",
    "Report", "apply", "collect_gates", "delete_adapter", "gate_values", "set_active", "trainable_names",
    "merge", "unmerge",
]
