"""The method registry. A new method is one file (a `Strategy` schema and a `Method`, see
`lamina.methods.base`) plus one `register(...)` line here; a method defined elsewhere (a plugin, a
test) registers the same way. Every other module reads methods from here and never names one."""

from __future__ import annotations

from lamina.errors import DesignError
from lamina.methods.base import Method, Stage, Strategy

METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Make `method` known to designs, the builder, the budget solver, saving, merging, PEFT interop
    and the search. Re-registering a name replaces it (so a test can redefine a method)."""
    if not method.name or method.schema.model_fields["method"].default != method.name:
        raise DesignError(f"method '{method.name}': its schema's `method` default must be '{method.name}'")
    METHODS[method.name] = method
    return method


def method_named(name: str) -> Method:
    if name not in METHODS:
        raise DesignError(f"unknown method '{name}' (known: {', '.join(METHODS)})")
    return METHODS[name]


def searchable() -> list[Method]:
    """The methods the design-space search may assign (those with a search letter), registry order."""
    return [m for m in METHODS.values() if m.letter]


from lamina.methods.adapter import AdapterMethod  # noqa: E402
from lamina.methods.bitfit import BitFitMethod  # noqa: E402
from lamina.methods.ia3 import IA3Method  # noqa: E402
from lamina.methods.ln import LayerNormMethod  # noqa: E402
from lamina.methods.lora import LoRAMethod  # noqa: E402
from lamina.methods.prefix import PrefixMethod  # noqa: E402

register(AdapterMethod())
register(PrefixMethod())
register(BitFitMethod())
register(LoRAMethod())
register(LayerNormMethod())
register(IA3Method())

__all__ = ["METHODS", "Method", "Stage", "Strategy", "method_named", "register", "searchable"]
