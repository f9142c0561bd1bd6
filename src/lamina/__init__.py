"""lamina: layer-wise, budget-aware parameter-efficient fine-tuning for Hugging Face transformers."""

from lamina.design import Adapter, BitFit, Budget, Design, DesignError, Group, LayerNormTuning, LoRA, Prefix, Prompt
from lamina.inject import Report, apply, collect_gates, delete_adapter, gate_values, set_active, trainable_names
from lamina.merge import merge, unmerge
from lamina.io import export_merged, load, save
from lamina.peft_format import export_peft, import_peft

__version__ = "0.1.0"

__all__ = [
    "Adapter", "BitFit", "Budget", "Design", "DesignError", "Group", "LayerNormTuning", "LoRA", "Prefix", "Prompt",
    "Report", "apply", "collect_gates", "delete_adapter", "gate_values", "set_active", "trainable_names",
    "merge", "unmerge", "save", "load", "export_merged", "export_peft", "import_peft",
]
