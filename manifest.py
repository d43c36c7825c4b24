"""Integrity manifests of saved folders (models, checkpoints): sizes and hashes, written last.

One job: say whether the files of a saved folder are the ones that were written. ``write``
records every file's size and SHA-256 in ``manifest.json``, atomically and after every other
file, so a folder whose manifest is present was completely written; ``verify`` re-reads the
files a reader needs and names the first one that is missing, cut or changed. Loaders
(``ppo_agent.PPOAgent.load``, ``train.py --resume``) call it before they parse anything, so a
damaged file gives one line naming it instead of a traceback from deep inside h5py or numpy.

Public names: ``MANIFEST``, ``CheckpointError``, ``write``, ``verify``, ``newest_intact``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import orjson

from utils import atomic_write_json

__all__ = ["MANIFEST", "CheckpointError", "newest_intact", "verify", "write"]

MANIFEST = "manifest.json"
"""The manifest's file name inside a saved folder: ``{"version": 1, "files": {name: {"size",
"sha256"}}}``."""


class CheckpointError(ValueError):
    """A saved folder's file is missing, cut, changed or unreadable; the message names it."""


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def write(folder: str | os.PathLike) -> Path:
    """Record the size and SHA-256 of every file of ``folder`` in its ``manifest.json`` (atomic).

    Hidden files (temp files of an atomic write) and the manifest itself are not recorded.

    Returns:
        The manifest's path.
    """
    d = Path(folder)
    files = {}
    for p in sorted(d.iterdir()):
        if p.is_file() and p.name != MANIFEST and not p.name.startswith("."):
            files[p.name] = {"size": p.stat().st_size, "sha256": _sha256(p)}
    return atomic_write_json(d / MANIFEST, {"version": 1, "files": files})


def verify(folder: str | os.PathLike, names: Iterable[str] | None = None, *,
           required: bool = False) -> bool:
    """Check the files ``names`` (default: every file listed) of ``folder`` against its manifest.

    Args:
        folder: the saved folder.
        names: the files the caller is about to read (one the manifest does not list was
            written after it by another writer and is not checked).
        required: a folder without a manifest is an error (else: nothing to check, False).

    Returns:
        True when checked, False when the folder has no manifest (saved before manifests).

    Raises:
        CheckpointError: naming the first file that is missing, has another size or another
            hash, or a manifest that cannot be read.
    """
    d = Path(folder)
    mpath = d / MANIFEST
    if not mpath.is_file():
        if required:
            raise CheckpointError(f"{mpath}: missing (the save did not complete)")
        return False
    try:
        listed = orjson.loads(mpath.read_bytes())
    except (orjson.JSONDecodeError, OSError) as e:
        raise CheckpointError(f"{mpath}: unreadable manifest ({type(e).__name__})") from None
    listed = listed.get("files") if isinstance(listed, dict) else None
    if not isinstance(listed, dict):
        raise CheckpointError(f"{mpath}: not a manifest (no 'files' object)")
    for name in (list(listed) if names is None else list(names)):
        p = d / name
        entry = listed.get(name)
        if entry is None:  # written after the manifest by another writer: not checked
            continue
        if not isinstance(entry, dict):
            raise CheckpointError(f"{mpath}: malformed entry for {name}")
        if not p.is_file():
            raise CheckpointError(f"{p}: missing (listed in {mpath.name})")
        size = p.stat().st_size
        if size != entry.get("size"):
            raise CheckpointError(f"{p}: {size:,} bytes, but {entry.get('size')!r} were written "
                                  "(cut or changed since the save)")
        if _sha256(p) != entry.get("sha256"):
            raise CheckpointError(f"{p}: content differs from the save (SHA-256 mismatch: corrupt or changed)")
    return True


def newest_intact(folders: Iterable[Path], names: Iterable[str] | None = None
                  ) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The first folder of ``folders`` (newest first) whose files verify.

    A folder without a manifest (saved before manifests) counts as intact when it holds
    ``agent.json``; its files are then read unchecked.

    Returns:
        ``(folder or None, [(skipped folder, reason), ...])``.
    """
    skipped: list[tuple[Path, str]] = []
    wanted = None if names is None else list(names)
    for f in folders:
        if not f.is_dir():
            skipped.append((f, "missing"))
            continue
        try:
            if not verify(f, wanted) and not (f / "agent.json").is_file():
                raise CheckpointError(f"{f}: neither {MANIFEST} nor agent.json (not a saved agent)")
        except CheckpointError as e:
            skipped.append((f, str(e)))
            continue
        return f, skipped
    return None, skipped
