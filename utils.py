"""Shared helpers: atomic file writes, running statistics, metrics and plotting.

Public names (this module grows with the metrics/plotting helpers of train.py and evaluate.py):

- ``atomic_write_bytes`` / ``atomic_write_text`` / ``atomic_write_json``: write a file so
  that a crash or Ctrl-C leaves either the old or the new content, never a half file.
- ``RunningMeanStd``: parallel-algorithm running mean/variance with a frozen flag and a
  JSON-serialisable state, used by the observation normaliser of the env and the agent.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import orjson


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename).

    Args:
        path: destination file; its folder is created if missing.
        data: the bytes to write.

    Returns:
        The destination as a ``Path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        # Also on KeyboardInterrupt: never leave the temp file behind.
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; see ``atomic_write_bytes``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (numpy scalars/arrays allowed)."""
    return atomic_write_bytes(
        path, orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    )


class RunningMeanStd:
    """Running mean and variance of a stream of arrays (Chan et al. parallel algorithm).

    The same update as Stable-Baselines3's ``RunningMeanStd`` and Gymnasium's
    ``NormalizeObservation``: a batch of shape ``(n, *shape)`` updates the statistics in one
    step. ``frozen=True`` turns ``update`` into a no-op, which is how evaluation uses the
    statistics learned in training.

    >>> rms = RunningMeanStd(shape=(), epsilon=0.0)
    >>> rms.update(np.array([1.0, 2.0, 3.0]))
    >>> float(rms.mean), round(float(rms.var), 6)
    (2.0, 0.666667)
    >>> rms.frozen = True; rms.update(np.array([100.0])); float(rms.mean)
    2.0
    """

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4) -> None:
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        self.count = float(epsilon)
        self.frozen = False

    def update(self, batch: np.ndarray) -> None:
        """Fold a batch (first axis = samples) into the statistics unless frozen."""
        if self.frozen:
            return
        batch = np.asarray(batch, dtype=np.float64)
        n = batch.shape[0]
        if n == 0:
            return
        b_mean = batch.mean(axis=0)
        b_var = batch.var(axis=0)
        delta = b_mean - self.mean
        tot = self.count + n
        new_mean = self.mean + delta * n / tot
        m2 = self.var * self.count + b_var * n + np.square(delta) * self.count * n / tot
        self.mean, self.var, self.count = new_mean, m2 / tot, tot

    def normalize(self, x: np.ndarray, clip: float = 10.0, eps: float = 1e-8) -> np.ndarray:
        """Return ``clip((x - mean) / sqrt(var + eps), -clip, clip)`` as float32."""
        z = (np.asarray(x, dtype=np.float64) - self.mean) / np.sqrt(self.var + eps)
        return np.clip(z, -clip, clip).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (lists), for saving beside a model."""
        return {"mean": self.mean.tolist(), "var": self.var.tolist(), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        self.mean = np.asarray(state["mean"], dtype=np.float64)
        self.var = np.asarray(state["var"], dtype=np.float64)
        self.count = float(state["count"])
