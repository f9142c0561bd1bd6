"""Method registry: a new method is one file plus one line here."""

from lamina.methods.adapter import AdapterMethod
from lamina.methods.bitfit import BitFitMethod
from lamina.methods.ln import LayerNormMethod
from lamina.methods.lora import LoRAMethod
from lamina.methods.prefix import PrefixMethod

METHODS = {
    "lora": LoRAMethod(),
    "bitfit": BitFitMethod(),
    "adapter": AdapterMethod(),
    "prefix": PrefixMethod(),
    "ln": LayerNormMethod(),
}
