"""Open recordings whatever their compression, and keep decompressed copies for seeking.

One job: get the decompressed bytes of a data file. The compression is sniffed from the file's
magic bytes, never from its name (recorders and exchanges name files inconsistently).

Names (internal to the data layer; the public entry points are in ``data_processor``):

- ``compression(path)``: ``"plain"``, ``"gzip"``, ``"zstd"`` or ``"zip"``.
- ``open_binary(path)``: a buffered reader of the decompressed bytes (a zip archive must hold
  exactly one data file; ``DataFormatError`` otherwise).
- ``plain_copy(src, cache_dir, fingerprint)``: decompress once into a cache folder (atomic),
  so that ``Replay`` can seek to its checkpoints' byte offsets.
- ``as_paths(path_or_paths)``: the list of input files, each checked to exist.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import orjson

from messages import DataFormatError
from utils import atomic_open

__all__ = ["as_paths", "compression", "open_binary", "plain_copy"]

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ZIP_MAGIC = b"PK\x03\x04"
_BUFFER = 1 << 20  # read buffer of every opened file, bytes


def compression(path: Path) -> str:
    """``"plain"``, ``"gzip"``, ``"zstd"`` or ``"zip"``, from the file's magic bytes.

    Args:
        path: the file.

    Returns:
        The compression name (``"plain"`` for anything without a known magic).
    """
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(ZIP_MAGIC):
        return "zip"
    return "plain"


def open_binary(path: Path) -> BinaryIO:
    """Open ``path`` for reading decompressed bytes, whatever its compression.

    Args:
        path: the file.

    Returns:
        A buffered binary reader (iterate it for lines); close it (``with``).

    Raises:
        DataFormatError: a zip archive without exactly one data file.
    """
    kind = compression(path)
    if kind == "gzip":
        return io.BufferedReader(gzip.GzipFile(path, "rb"), buffer_size=_BUFFER)  # type: ignore[arg-type]
    if kind == "zstd":
        import zstandard

        fh = open(path, "rb")  # noqa: SIM115 - closed with the returned reader
        reader = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True, closefd=True)
        return io.BufferedReader(reader, buffer_size=_BUFFER)  # type: ignore[arg-type]
    if kind == "zip":
        zf = zipfile.ZipFile(path)
        members = [m for m in zf.infolist() if not m.is_dir()]
        if len(members) != 1:
            names = ", ".join(m.filename for m in members) or "none"
            zf.close()
            raise DataFormatError(path, None, f"zip archive must hold exactly one data file, found: {names}")
        return io.BufferedReader(zf.open(members[0]), buffer_size=_BUFFER)  # type: ignore[arg-type]
    return open(path, "rb", buffering=_BUFFER)  # noqa: SIM115


def plain_copy(src: Path, cache_dir: Path, fingerprint: dict) -> Path:
    """Decompress ``src`` once into ``cache_dir`` (atomic: temp file + fsync + rename).

    Args:
        src: a compressed file.
        cache_dir: the cache folder (exists).
        fingerprint: the source's fingerprint (size, mtime, hash); it keys the copy's name, so
            a changed source gets a new copy.

    Returns:
        The path of the decompressed copy, ``<name>.<key>.plain``.
    """
    key = hashlib.sha256(orjson.dumps(fingerprint)).hexdigest()[:16]
    dst = cache_dir / f"{src.name}.{key}.plain"
    if dst.is_file():
        return dst
    with atomic_open(dst) as out, open_binary(src) as fh:  # streamed, never whole in memory
        while chunk := fh.read(1 << 22):
            out.write(chunk)
    return dst


def as_paths(path_or_paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """The input files of one recording, in order, each checked to be a file.

    Args:
        path_or_paths: one path, or a sequence of paths.

    Returns:
        The paths as ``Path`` objects.

    Raises:
        ValueError: an empty sequence.
        FileNotFoundError: a path that is not a file.
    """
    if isinstance(path_or_paths, str | os.PathLike):
        paths = [Path(path_or_paths)]
    else:
        paths = [Path(p) for p in path_or_paths]
    if not paths:
        raise ValueError("no input file given")
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such file")
    return paths
