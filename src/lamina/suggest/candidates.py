"""The candidate methods `lamina suggest` can place in a layer: the one list (the method registry will
supply it later). Each is written in the design schema (the same mapping a design YAML holds), with
the name of the field the budget solver sizes (None: a fixed-cost method)."""

from __future__ import annotations

from lamina.errors import DesignError

# name -> (strategy options with the size left to the solver, sized field); order = display order
CANDIDATES: dict[str, tuple[dict, str | None]] = {
    "lora": ({"r": None, "targets": ["q", "v"]}, "r"),
    "adapter": ({"bottleneck": None, "placement": "pfeiffer"}, "bottleneck"),
    "prefix": ({"length": None}, "length"),
    "bitfit": ({"which": "all"}, None),
    "ln": ({}, None),
}
DEFAULT_METHODS = tuple(CANDIDATES)


def size_field(method: str) -> str | None:
    return CANDIDATES[method][1]


def is_sized(method: str) -> bool:
    """Sized methods grow with the budget (rank, bottleneck, length); the others have a fixed cost."""
    return size_field(method) is not None


def parse_methods(value) -> tuple[str, ...]:
    """'lora+adapter' / 'lora,adapter' / a sequence -> known method names, in CANDIDATES order."""
    if value is None:
        return DEFAULT_METHODS
    items = value.replace(",", "+").split("+") if isinstance(value, str) else list(value)
    names = [str(m).strip() for m in items if m is not None and str(m).strip()]
    if not names:
        raise DesignError("methods: name at least one method")
    unknown = [m for m in names if m not in CANDIDATES]
    if unknown:
        raise DesignError(f"methods: unknown method '{unknown[0]}' (known: {', '.join(CANDIDATES)})")
    twice = [m for i, m in enumerate(names) if m in names[:i]]
    if twice:
        raise DesignError(f"methods: '{twice[0]}' is listed twice; list each method once")
    return tuple(m for m in CANDIDATES if m in names)


def strategy(method: str, size: int | None = None) -> dict:
    """The candidate as a design-schema strategy, at `size` (None: left to the budget solver)."""
    options, field = CANDIDATES[method]
    spec = {"method": method, **options}
    if field is not None and size is not None:
        spec[field] = int(size)
    return spec


def size_of(spec: dict) -> int | None:
    """The size of a strategy mapping (from `Design.to_dict()`); None for fixed-cost methods."""
    field = size_field(spec["method"])
    return None if field is None else spec.get(field)
