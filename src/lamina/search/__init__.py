"""Design-space search over a real study store, three strategies, one compute ledger.

- `space`: `SearchSpace` (YAML) over grouping, allocation, tunable groups and strategies under one
  budget (Chen et al., ICLR 2023, arXiv 2301.01821); seeded sampling of `Point`s; budget-sized Designs.
- `config`: `SearchConfig`, every setting that defines a search's results (strategy included).
- `engine`: `Search` (one worker): phases as studies of pre-planned trials, trials trained by
  `lamina.train`, the final training, the outputs.
- strategies: `stages` (greedy: the paper's progressive refinement), `joint` (TPE over all components at
  once, multi-fidelity pruning, warm-started by `lamina suggest`), `oneshot` (a gated supernet with a
  budget penalty, pruned to a design).
- `analysis`: a greedy stage's statistics and winner; `record`: search.json rebuilt from the store;
  `ledger`: the compute ledger (full-training equivalents, anytime series); `store`: the Optuna RDB
  layout, enqueue-once, heartbeats and retries, exactly-once counting.
"""

from lamina.search.space import (
    COMPONENTS, Point, SearchSpace, SpaceError, choice_label, default_space_file,
)
from lamina.search.config import PRUNERS, STRATEGIES, SearchConfig
from lamina.search.record import build_record
from lamina.search.engine import Search
from lamina.search.strategies import strategy_module


__all__ = [
    "COMPONENTS", "PRUNERS", "Point", "STRATEGIES", "SearchSpace", "SpaceError", "choice_label",
    "default_space_file", "Search", "SearchConfig", "build_record", "strategy_module",
]
