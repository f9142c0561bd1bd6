"""lamina: layer-wise, budget-aware parameter-efficient fine-tuning for Hugging Face transformers.

Names are imported on first use (PEP 562), so `import lamina` and the CLI's start-up stay light; every
name below is available as `lamina.<name>`.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_WHERE = {
    "Design": "lamina.design", "Group": "lamina.design", "Budget": "lamina.design", "Prompt": "lamina.design",
    "DesignError": "lamina.errors", "LaminaError": "lamina.errors",
    "Adapter": "lamina.methods.adapter", "BitFit": "lamina.methods.bitfit", "IA3": "lamina.methods.ia3",
    "LayerNormTuning": "lamina.methods.ln", "LoRA": "lamina.methods.lora", "Prefix": "lamina.methods.prefix",
    "register_method": ("lamina.methods", "register"),
    "Report": "lamina.build", "apply": "lamina.inject", "collect_gates": "lamina.inject",
    "delete_adapter": "lamina.inject", "gate_values": "lamina.inject", "set_active": "lamina.inject",
    "trainable_names": "lamina.inject",
    "merge": "lamina.merging", "unmerge": "lamina.merging",
    "save": "lamina.io", "load": "lamina.io", "export_merged": "lamina.export",
    "export_peft": "lamina.peft_format", "import_peft": "lamina.peft_format",
    "suggest": "lamina.suggest",  # the function; the package of that name is callable too (lamina.suggest)
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'lamina' has no attribute '{name}'")
    module, attr = where if isinstance(where, tuple) else (where, name)
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_WHERE))
