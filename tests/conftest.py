"""Shared pytest fixtures: the real-data folder beside the checkout, CPU-only TensorFlow."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # tests are CPU-only and deterministic
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ``../shared/data``; skips the test where the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real recordings not found at {SHARED_DATA} (only present beside the project's own checkout/CI)")
    return SHARED_DATA


@pytest.fixture(scope="module", params=["compiled", "python"])
def both_loops(request):
    """Run a test module twice: with the compiled per-level loops and with the pure-Python ones.

    ``order_book.SPEEDUPS`` is what ``OrderBook`` binds when created and what
    ``data_processor`` reads when a load starts; ``None`` selects the pure-Python loops.
    """
    import order_book

    saved = order_book.SPEEDUPS
    if request.param == "compiled" and saved is None:
        pytest.skip("the C accelerator _speedups is not built in this checkout "
                    "(pip install -e . with a C compiler); the pure-Python run covers the module")
    if request.param == "python":
        order_book.SPEEDUPS = None
    yield request.param
    order_book.SPEEDUPS = saved
