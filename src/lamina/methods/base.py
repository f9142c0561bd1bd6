"""The method unit: everything lamina knows about a PEFT method, declared in one place.

A method is one file under `lamina/methods/` holding its strategy schema (a `Strategy` subclass: the
YAML/CLI name and options) and a `Method` subclass (how it builds, attaches, sizes, merges, saves,
reports gates, and maps to the PEFT format), plus one `register(...)` line in `methods/__init__.py`.
Every other module asks the registry; none names a method.

Every method is a *delta* that lives in its own modules and reaches the model through forward hooks
(OpenDelta's three moves: unfreeze-as-delta, wrap, insert). The base model's tensors are never
written (until an explicit merge), so frozen weights stay bit-identical, several named adapters can
sit on one model, and disabling them gives the base model's outputs back exactly.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Annotated, Any, ClassVar, Iterator

import torch
from pydantic import BaseModel, ConfigDict, Strict
from torch import nn

from lamina.arch import Layer, ModelMap, Site, in_out
from lamina.errors import DesignError


# A number option of a strategy schema: an int or a float, never a bool or a string (strict), and finite
# (every schema refuses nan/inf through `allow_inf_nan=False` below).
Real = Annotated[float, Strict()]


class Strategy(BaseModel):
    """Base of every method's schema: strict (unknown keys fail), frozen, finite numbers only, `method` names
    the method. Number options use `Real` (or StrictInt), so a bool or a string is never read as a number."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    method: str


def unique_names(value: tuple[str, ...], what: str = "target") -> tuple[str, ...]:
    """A `targets`-like tuple: at least one name, each once (the duplicate is named)."""
    if not value:
        raise ValueError(f"must name at least one {what}")
    seen = set()
    for name in value:
        if name in seen:
            raise ValueError(f"{what} '{name}' is listed twice; list each {what} once")
        seen.add(name)
    return value


class Stage(IntEnum):
    """Where a method's hooks sit relative to others on the same module (hooks run in registration
    order). The rule: a change to a projection's weight first, then additive output deltas, then
    rescalings of the output (so they scale everything before them, exactly as the merged weights do),
    then inserts that read the output (so an insert sees the same input whether the deltas before it
    run as hooks or are merged)."""

    WEIGHT = 0  # LoRA, DoRA: a delta on the projection's weight
    BIAS = 1  # BitFit, LayerNorm tuning: additive deltas on outputs / affine parameters
    SCALE = 2  # IA3: multiplies an output by a learned vector
    INSERT = 3  # adapters, prefix: new computation that reads a module's output


class Method:
    """Base implementation; a method overrides what differs. Class attributes are its declaration."""

    name: ClassVar[str]  # the YAML/CLI name (= the schema's `method` literal)
    title: ClassVar[str] = ""  # what messages call it ("BitFit (bias deltas)"); default: the name
    schema: ClassVar[type[Strategy]]
    stage: ClassVar[Stage] = Stage.INSERT
    size_field: ClassVar[str | None] = None  # the integer size the budget solver picks (None: fixed cost)
    letter: ClassVar[str | None] = None  # one-letter label for the design-space search (None: not searched)
    in_default_space: ClassVar[bool] = False  # offered by the default search space (the paper's A, P, B, L)
    search_options: ClassVar[dict] = {}  # the options a search builds it with (sizes come from the budget)
    peft: ClassVar[Any] = None  # a PEFT-format codec (see lamina.peft_format), or None

    @property
    def label(self) -> str:
        return self.title or self.name

    # --- schema and size -------------------------------------------------------------------------
    def parse(self, data: dict) -> Strategy:
        return self.schema.model_validate(data)

    def size(self, strategy: Strategy) -> int | float | None:
        """The strategy's size, or None when the budget solver must pick it (0 for unsized methods)."""
        return getattr(strategy, self.size_field) if self.size_field else 0

    def size_options(self) -> tuple[str, ...]:
        """Options that set the size (a search space may not fix them: the budget does)."""
        return (self.size_field,) if self.size_field else ()

    def resized(self, strategy: Strategy, size: int | None) -> Strategy:
        """The strategy at integer `size` (None: left to the budget solver)."""
        return strategy.model_copy(update={self.size_field: size}) if self.size_field else strategy

    def check(self, strategy: Strategy, mmap: ModelMap, where: str) -> None:
        """Fail on options this model cannot honour. Default: `targets` must be projections it has."""
        known = mmap.known_targets()
        named: dict = {}  # (path, slice) -> the target that named it: 'q' and 'query' are one projection
        for t in getattr(strategy, "targets", ()):
            if t not in known:
                raise DesignError(f"{where}.targets: unknown target '{t}' (this model has: {', '.join(sorted(known))})")
            for site in mmap.sites(mmap.layers[0], t):
                first = named.setdefault((site.path, site.part), t)
                if first != t:
                    raise DesignError(f"{where}.targets: '{first}' and '{t}' name the same projection ({site.path}); "
                                      "list it once")

    @staticmethod
    def check_bound(value: int | None, limit: int | None, field: str, what: str) -> None:
        """A size option must fit what the model can hold: `value` <= `limit` (`what` names the limit, e.g.
        "this model's 512 positions (max_position_embeddings)"); None on either side: nothing to check."""
        if value is not None and limit is not None and value > limit:
            raise DesignError(f"{field}: {value} is more than {what}; use at most {limit}")

    # --- build, attach, merge --------------------------------------------------------------------
    def build(self, strategy: Strategy, layers: list[Layer], ctx: "BuildContext") -> nn.Module:
        raise NotImplementedError

    def attach(self, module: nn.Module, strategy: Strategy, layers: list[Layer], ctx: "BuildContext") -> None:
        raise NotImplementedError

    def merge(self, module: nn.Module, strategy: Strategy, layers: list[Layer], ctx: "BuildContext", undo: bool) -> str | None:
        """Fold into the base weights (or undo it); return None, or why this part cannot be merged."""
        return f"{self.name} (not mergeable)"

    # --- what a save keeps, what reports read ----------------------------------------------------
    def stored_strategy(self, strategy: Strategy) -> Strategy:
        """The strategy a saved adapter is rebuilt with (prefix: without its training-only MLP)."""
        return strategy

    def stored_tensors(self, module: nn.Module) -> dict[str, torch.Tensor]:
        """What a save writes, named relative to the module (default: every tensor it trains)."""
        return {k: v.detach().contiguous() for k, v in module.state_dict().items()}

    def stored_count(self, module: nn.Module, strategy: Strategy) -> int:
        return sum(p.numel() for p in module.parameters())

    def scaled_tensors(self, module: nn.Module, strategy: Strategy) -> dict[str, "float | torch.Tensor"]:
        """The tensors through which the method's contribution can be scaled, each with its neutral value
        (names as in `module.named_parameters()`). A search that gates the method (the one-shot search's
        architecture gates) reads each tensor t as neutral + g·(t − neutral): g = 0 turns the method off,
        g = 1 leaves it as trained, and a contribution linear in these tensors is scaled by exactly g.
        Hooks must read these tensors from the module at call time (not hold on to them at attach).
        Default: every tensor that is all zeros as built, outside UniPELT gates — the zero-initialised
        deltas of methods whose output is linear in them (BitFit, LayerNorm deltas)."""
        gate_tensors = {id(p) for sub in module.modules() if isinstance(sub, Gate) for p in sub.parameters()}
        return {name: 0.0 for name, p in module.named_parameters()
                if id(p) not in gate_tensors and not p.detach().any()}

    def gates(self, module: nn.Module) -> Iterator[tuple[int, "Gate"]]:
        """(layer index, gate) pairs. Default: the module is keyed by layer index, gates inside."""
        if isinstance(module, nn.ModuleDict):
            for key, per_layer in module.items():
                if key.isdigit():
                    for sub in per_layer.modules():
                        if isinstance(sub, Gate):
                            yield int(key), sub


@dataclass
class Runtime:
    """Per-model state shared by all hooks (a plain object on `model._lamina`, not a module)."""

    active: list[str] = field(default_factory=list)  # adapter names whose hooks act
    handles: dict[str, list] = field(default_factory=dict)  # adapter name -> hook handles
    mask: torch.Tensor | None = None  # the batch's attention mask, for masked-mean gates
    step: int = 0  # forward counter, for per-forward caches (prefix MLP)
    collect_gates: bool = False
    before: dict[str, list] = field(default_factory=dict)  # adapter name -> callables run at each model entry
    attention_gates: dict[tuple, list] = field(default_factory=dict)  # (adapter, stack, layer) -> gates reading the attention input
    outer: int | None = None  # the saved-tensor hooks in force at the model's entry (see Gate)
    _mean_weights: tuple | None = field(default=None, repr=False)  # (mask ref, dtype, weights) for masked means

    def enter(self, mask) -> None:
        """The model's forward begins: count it, remember the mask, run the active adapters' per-forward
        work (outside any gradient-checkpointed block)."""
        self.step += 1
        self.mask = mask
        self.outer = _saved_tensors_context()
        for name in self.active:
            for fn in self.before.get(name, ()):
                fn()

    def mean_weights(self, mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """[B, 1, T]: the mask over its row count, so a batched product gives masked means; made once per
        mask (every gate of a forward shares it)."""
        cached = self._mean_weights
        key = (dtype, mask._version, mask.device)
        if cached is None or cached[0]() is not mask or cached[1] != key:
            m = mask.to(dtype).unsqueeze(1)
            cached = self._mean_weights = (weakref.ref(mask), key, m / m.sum(-1, keepdim=True).clamp_min(1.0))
        return cached[2]

    def is_active(self, name: str) -> bool:
        return name in self.active

    @property
    def active_name(self) -> str | None:
        return self.active[0] if self.active else None


@dataclass
class BuildContext:
    """What a method needs to build its modules for one layer."""

    mmap: ModelMap
    hidden: int
    runtime: Runtime
    name: str  # adapter name
    model: nn.Module
    exact_merge: bool = False  # set by lamina.merge: keep copies of merged base tensors (bit-exact unmerge)

    def projection(self, layer: Layer, site: Site) -> nn.Module:
        return layer.block.get_submodule(site.path)

    def out_width(self, layer: Layer, site: Site) -> int:
        return in_out(self.projection(layer, site))[1] // site.parts

    def before_forward(self, fn) -> None:
        """Run `fn()` at the start of every forward of the model while this adapter is active."""
        entries = self.runtime.before.setdefault(self.name, [])
        entries.append(fn)
        self.runtime.handles.setdefault(self.name, []).append(_Removal(entries, fn))

    def share_gate(self, layer: Layer, gate: "Gate") -> None:
        """Register a gate that reads the layer's attention input (UniPELT's prefix and LoRA gates): the
        gates registered for one layer and adapter are evaluated together (see `Gate`)."""
        key = (self.name, layer.stack, layer.index)
        entries = self.runtime.attention_gates.setdefault(key, [])
        for other in entries:
            gate.share(other)
        entries.append(gate)
        self.runtime.handles.setdefault(self.name, []).append(_Removal(entries, gate))

    def hook(self, module: nn.Module, fn, *, pre: bool = False, with_kwargs: bool = False):
        handle = (
            module.register_forward_pre_hook(fn, with_kwargs=with_kwargs)
            if pre
            else module.register_forward_hook(fn, with_kwargs=with_kwargs)
        )
        self.runtime.handles.setdefault(self.name, []).append(handle)
        return handle


class _Removal:
    """A hook-handle look-alike: deleting the adapter removes its per-forward work like its hooks."""

    def __init__(self, entries: list, fn):
        self.entries, self.fn = entries, fn

    def remove(self) -> None:
        if self.fn in self.entries:
            self.entries.remove(self.fn)


def add_to_slice(out: torch.Tensor, delta: torch.Tensor, site: Site) -> torch.Tensor:
    """out + delta, where delta covers only the site's slice of a fused projection's output."""
    if site.parts == 1:
        return out + delta
    width = out.shape[-1]
    sl = site.out_slice(width)
    return out + nn.functional.pad(delta, (sl.start, width - sl.stop))


def add_product(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """out + a @ b (a: [..., k], b: [k, width]) as one addmm, so the product's full-width result is never
    a temporary of its own. Without autograd recording, `out` (a projection's fresh output, handed to a
    hook) is updated in place, which also saves addmm's copy of it."""
    flat, rows = out.reshape(-1, out.shape[-1]), a.reshape(-1, a.shape[-1])
    result = flat.addmm_(rows, b) if not torch.is_grad_enabled() else torch.addmm(flat, rows, b)
    return result.view(out.shape)


class _ForwardMemo:
    """A value remembered for the input tensor it was computed from, within one forward pass, per
    saved-tensor-hooks context (see Gate on gradient checkpointing). Shared by gates and the projections
    they carry (Rider); `_memo_tensors` names the weights whose in-place change makes a value stale."""

    def _memo_tensors(self) -> tuple:
        raise NotImplementedError

    def _pass(self, runtime: "Runtime") -> tuple:
        """What a remembered value is valid for besides its input and context: this forward (and its mask),
        the grad mode, these weights."""
        return (runtime.step, id(runtime.mask), torch.is_grad_enabled(),
                *(None if t is None else t._version for t in self._memo_tensors()))

    def _entries(self, runtime: "Runtime", contexts):
        """This forward's remembered (input ref, pass, value) entries in `contexts` (saved-tensor hooks: the
        current ones, then those at the model's entry)."""
        now = self._pass(runtime)
        memo = self.__dict__.get("_memo", {})
        return [memo[w] for w in contexts if w in memo and memo[w][1] == now]

    def _remembered(self, x: torch.Tensor, runtime: "Runtime", contexts) -> torch.Tensor | None:
        return next((value for (ref, version), _, value in self._entries(runtime, contexts)
                     if ref() is x and x._version == version), None)

    def _keep(self, runtime: "Runtime", where, ref, value) -> None:
        """Keep `value` for this forward's input `ref` in context `where` (earlier passes dropped)."""
        now = self._pass(runtime)
        memo = {k: v for k, v in self.__dict__.get("_memo", {}).items() if v[1] == now}
        memo[where] = (ref, now, value)
        self.__dict__["_memo"] = memo

    def __getstate__(self):
        state = dict(super().__getstate__())
        state["_memo"] = {}  # a copy does not inherit a forward's values (nor their autograd graph)
        return state


class Gate(_ForwardMemo, nn.Module):
    """UniPELT gate: sigmoid(Linear(hidden, 1)(x)), averaged over the (unpadded) sequence -> one scalar
    per example. Keeps the last values and, while collecting, a running sum for reports.

    `causal` (gates in a decoder stack, set at attach): one value per token instead, so a position never
    reads later ones (the sequence mean would leak the future into a language-model loss, and generation
    with the key/value cache, which sees one new token at a time, would disagree with generation without).

    Shared work (a gate attached to a runtime): a value is remembered for the input tensor it was computed
    from, within one forward pass (LoRA's gate serves q and v from one evaluation), and the gates of one
    layer that may read the same hidden states (`peers`, joined with `share`: UniPELT's prefix and LoRA
    gates) are evaluated by one projection, their masked means by one batched product; a peer whose input
    turns out to be another tensor (a pre-LN block) computes its own. Which gates a pass evaluates together
    does not depend on what earlier passes saw. Gradient checkpointing: a value remembered inside a
    checkpointed block is not reused by the block's recomputation (which must save what the original
    saved: it runs under other saved-tensor hooks), one remembered outside any block (the prefix gate's
    block pre-hook runs outside the checkpoint) is, as it was in the original forward."""

    def __init__(self, hidden: int):
        super().__init__()
        self.proj = nn.Linear(hidden, 1)
        nn.init.normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)
        self.runtime: Runtime | None = None
        self.causal = False
        self.last: torch.Tensor | None = None
        self.total = 0.0
        self.count = 0
        self.__dict__["peers"] = []  # plain list: not submodules (no state-dict keys, no double counting)
        self.__dict__["riders"] = []  # projections of this gate's input computed by its product (see Rider)
        self.__dict__["_memo"] = {}  # saved-tensor hooks context -> (input ref, pass key, value)

    def share(self, other: "Gate") -> None:
        """Evaluate `other` with this gate when they read the same input (both ways)."""
        if other is not self and other not in self.peers:
            self.peers.append(other)
            other.peers.append(self)

    def carry(self, rider: "Rider") -> None:
        """Compute `rider`'s projection of this gate's input with the gate's own product."""
        if rider not in self.riders:
            self.riders.append(rider)
            rider.__dict__["_rider_runtime"] = self.runtime

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        runtime = self.runtime
        if runtime is None:
            gate = _gate_values([self], x, None, self.causal)[0]
        else:
            where = _saved_tensors_context()
            contexts = (where, runtime.outer)
            gate = self._remembered(x, runtime, contexts)
            if gate is None:
                group = [self] + [p for p in self.peers if p.causal == self.causal and p.runtime is runtime
                                  and not p._entries(runtime, contexts)]
                riders = [r for g in group for r in g.riders if r.recall(x, runtime) is None]
                ref = (weakref.ref(x), x._version)  # an input changed in place since is another input
                for owner, value in zip(group + riders, _gate_values(group, x, runtime, self.causal, riders)):
                    owner._keep(runtime, where, ref, value)
                gate = self.__dict__["_memo"][where][2]
        self.last = gate.detach().flatten()
        if runtime is not None and runtime.collect_gates:
            self.total += float(self.last.sum())
            self.count += self.last.numel()
        return gate

    def _memo_tensors(self) -> tuple:
        return self.proj.weight, self.proj.bias

    def value(self) -> float | None:
        if self.count:
            return self.total / self.count
        return float(self.last.mean()) if self.last is not None else None

    def reset(self) -> None:
        self.total, self.count, self.last = 0.0, 0, None


class Rider(_ForwardMemo):
    """A projection that reads a gate's input (LoRA's A, an adapter's down projection): carried by the gate
    (`Gate.carry`), its rows join the gate's product, so the input is read once and backward returns one
    full-width gradient for it instead of one per projection. `recall(x)` gives the carried result for
    this input, in this forward, or None (then the owner computes it as before)."""

    def rider_rows(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def _memo_tensors(self) -> tuple:
        return self.rider_rows()

    def recall(self, x: torch.Tensor, runtime: "Runtime | None" = None) -> torch.Tensor | None:
        runtime = runtime or self.__dict__.get("_rider_runtime")
        if runtime is None or not self.__dict__.get("_memo"):
            return None
        return self._remembered(x, runtime, (_saved_tensors_context(), runtime.outer))


def _saved_tensors_context() -> int | None:
    """Identifies the saved-tensor hooks in force (a checkpointed block's forward and its recomputation
    each run under their own)."""
    top = torch._C._autograd._top_saved_tensors_default_hooks(False)
    return id(top[0]) if top else None


def _gate_values(gates: list[Gate], x: torch.Tensor, runtime: Runtime | None, causal: bool,
                 riders: list[Rider] = ()) -> list[torch.Tensor]:
    """Each gate's value on `x`, from one projection: [B, 1, ..., 1] per example (masked mean over the
    sequence), or [B, T, 1] per token (causal); then each rider's projection of `x`, from the same product."""
    if len(gates) == 1 and not riders:
        weight, bias = gates[0].proj.weight, gates[0].proj.bias
    else:
        rows = [r.rider_rows() for r in riders]
        weight = torch.cat([g.proj.weight for g in gates] + [w.to(x.dtype) for w, _ in rows])
        bias = torch.cat([g.proj.bias for g in gates] + [(b if b is not None else w.new_zeros(w.shape[0])).to(x.dtype)
                                                         for w, b in rows])
    logits = nn.functional.linear(x, weight, bias)
    carried = []
    if riders:
        logits, *carried = logits.split([len(gates)] + [w.shape[0] for w, _ in rows], dim=-1)
    return _gate_reduce(torch.sigmoid(logits), x, runtime, causal) + carried


def _gate_reduce(scores: torch.Tensor, x: torch.Tensor, runtime: Runtime | None, causal: bool) -> list[torch.Tensor]:
    """[B, T, k] sigmoid scores -> k gate values (see _gate_values)."""
    if causal and x.dim() == 3:
        return list(scores.split(1, dim=-1))  # per token
    mask = runtime.mask if runtime is not None else None
    if x.dim() == 3 and mask is not None and tuple(mask.shape) == tuple(x.shape[:2]):
        gate = torch.bmm(runtime.mean_weights(mask, scores.dtype), scores)  # [B, 1, k]: masked means, no [B, T, k] temporary
    elif scores.dim() > 2:
        gate = scores.mean(dim=tuple(range(1, scores.dim() - 1)))
    else:
        return list(scores.split(1, dim=-1))
    shape = (x.shape[0], *([1] * (x.dim() - 1)))  # broadcast over [B, T, H]
    return [column.reshape(shape) for column in gate.reshape(x.shape[0], -1).split(1, dim=-1)]


def layer_dtype(layer: Layer) -> torch.dtype:
    return next(layer.block.parameters()).dtype


def first_tensor(args, kwargs, name: str = "hidden_states") -> torch.Tensor:
    """The first positional tensor argument of a forward call, or the named keyword."""
    if args and isinstance(args[0], torch.Tensor):
        return args[0]
    return kwargs.get(name)


@dataclass
class _Folded:
    """What a merge remembers of one base tensor: the original (exact mode), or a float64 fingerprint
    (sum, sum of squares) and, for a rescaling, the factor it multiplied by (lean mode: no copies)."""

    original: torch.Tensor | None
    fingerprint: tuple[float, float]
    factor: torch.Tensor | None = None


FOLD_TOLERANCE = 1e-5  # lean unmerge: relative change of the fingerprint's sum of squares it accepts


def _fingerprint(view: torch.Tensor) -> tuple[float, float]:
    """float64 sums, a slice at a time (no full-size temporary)."""
    total = squares = 0.0
    flat = view.detach().reshape(-1, view.shape[-1]) if view.dim() > 1 else view.detach().reshape(1, -1)
    for chunk in flat.split(32):
        chunk = chunk.double()
        total += float(chunk.sum())
        squares += float(chunk.pow(2).sum())
    return total, squares


def _remember(owner: nn.Module, key: str, view: torch.Tensor, exact: bool, factor=None) -> None:
    saved = owner.__dict__.setdefault("_folds", {})
    saved[key] = _Folded(view.detach().clone() if exact else None, _fingerprint(view), factor)
    owner.merged = True


def _restored(owner: nn.Module, key: str, view: torch.Tensor) -> None:
    """After a lean unmerge: check the tensor against its fingerprint; a restore outside the tolerance
    is a clear error (merge with exact=True to restore bit for bit)."""
    from lamina.errors import LaminaError

    saved = owner.__dict__["_folds"].pop(key)
    owner.merged = bool(owner.__dict__["_folds"])
    total, squares = _fingerprint(view)
    error = abs(squares - saved.fingerprint[1]) / max(abs(saved.fingerprint[1]), 1e-30)
    if error > FOLD_TOLERANCE:
        raise LaminaError(f"unmerge restored a base tensor ({key}) only to a relative error of {error:.2e} "
                          f"(tolerance {FOLD_TOLERANCE:.0e}); merge with exact=True to restore bit for bit")


def fold(owner: nn.Module, key: str, view: torch.Tensor, update, undo: bool, exact: bool = False) -> None:
    """Merge: base view += update. `update` is a tensor, or a function `add(view, sign)` that adds
    sign·update in place (LoRA uses addmm_, so no full-size temporary exists). `exact` keeps a copy of
    the original so unmerge restores it bit for bit; otherwise only a fingerprint is kept and unmerge
    subtracts the update (recomputed by the caller) and checks the fingerprint. The records live on the
    method's module; `owner.merged` tells hooks to stand down while anything is folded."""
    saved = owner.__dict__.setdefault("_folds", {})
    add = update if callable(update) else (lambda v, sign: v.add_(update.to(v.dtype), alpha=sign))
    with torch.no_grad():
        if not undo and key not in saved:
            _remember(owner, key, view, exact)
            add(view, 1.0)
        elif undo and key in saved:
            if saved[key].original is not None:
                view.copy_(saved.pop(key).original)
                owner.merged = bool(saved)
            else:
                add(view, -1.0)
                _restored(owner, key, view)


def fold_scale(owner: nn.Module, key: str, view: torch.Tensor, factor: torch.Tensor, undo: bool, exact: bool = False) -> None:
    """Merge a rescaling: base view *= factor (broadcast), in place. Lean mode remembers the factor (a
    vector), so unmerge divides by exactly what was multiplied."""
    saved = owner.__dict__.setdefault("_folds", {})
    with torch.no_grad():
        if not undo and key not in saved:
            factor = factor.detach().to(view.dtype)
            exact = exact or bool((factor == 0).any())  # a zero factor cannot be divided out again
            _remember(owner, key, view, exact, None if exact else factor.clone())
            view.mul_(factor)
        elif undo and key in saved:
            if saved[key].original is not None:
                view.copy_(saved.pop(key).original)
                owner.merged = bool(saved)
            else:
                view.div_(saved[key].factor)
                _restored(owner, key, view)
