import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# Tiny models: thread start-up costs more than it saves (and 2 threads on a loaded 2-core box are
# several times slower); tests that want more set it themselves.
torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """The hostile-input suites' shared world (tests/fuzz_world.py): built once per session; every case checks
    it is left unchanged, so sharing it is safe."""
    from fuzz_world import build

    return build(tmp_path_factory.mktemp("world"))

