"""Design-space search (Chen et al., ICLR 2023, arXiv 2301.01821) over a real study store.

- `space`: `SearchSpace` (YAML) over grouping, allocation, tunable groups and strategies under one
  budget; seeded sampling of `Point`s; `SearchSpace.design(point, num_layers)` -> a budget-sized Design.
- `stages`: `Search` (one worker) and `SearchConfig`: greedy stages, trials trained by `lamina.train`.
- `analysis`: per-choice statistics and the winner rule of a stage.
- `record`: the search record (search.json) rebuilt from the store.
- `store`: the Optuna RDB layout, enqueue-once, heartbeats and retries, exactly-once counting.
"""

from lamina.search.space import (
    COMPONENTS, Point, SearchSpace, SpaceError, choice_label, default_space_file,
)
from lamina.search.record import build_record
from lamina.search.stages import Search, SearchConfig

__all__ = [
    "COMPONENTS", "Point", "SearchSpace", "SpaceError", "choice_label", "default_space_file",
    "Search", "SearchConfig", "build_record",
]
