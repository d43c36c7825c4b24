"""Open recordings whatever their compression, and keep decompressed copies for seeking.

One job: get the decompressed bytes of a data file. The compression is sniffed from the file's
magic bytes, never from its name (recorders and exchanges name files inconsistently).

Names (internal to the data layer; the public entry points are in ``data_processor``):

- ``compression(path)``: ``"plain"``, ``"gzip"``, ``"zstd"``, ``"bz2"`` or ``"zip"``.
- ``open_binary(path)``: a buffered reader of the decompressed bytes (a zip archive must hold
  one data file, documentation members such as a ReadMe aside, or a LOBSTER message +
  orderbook pair, whose message file is the data; ``DataFormatError`` otherwise).
- ``open_companion(path, part)``: the companion file of a data file (LOBSTER's ``orderbook``
  beside its ``message`` file: the other member of the zip, the sibling file, or the
  ``.<part>`` file ``plain_copy`` writes beside a decompressed copy), or None.
- ``plain_copy(src, cache_dir, fingerprint)``: decompress once into a cache folder (atomic),
  so that ``Replay`` can seek to its checkpoints' byte offsets.
- ``as_paths(path_or_paths)``: the list of input files, each checked to exist.
"""

from __future__ import annotations

import bz2
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

__all__ = ["as_paths", "compression", "open_binary", "open_companion", "plain_copy"]

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ZIP_MAGIC = b"PK\x03\x04"
BZ2_MAGIC = b"BZh"
_DOC_SUFFIXES = (".txt", ".md", ".pdf", ".html")  # zip members that document, not data
_PAIR = ("_message_", "_orderbook_")  # a LOBSTER zip: the message file is the data
_BUFFER = 1 << 20  # read buffer of every opened file, bytes


def compression(path: Path) -> str:
    """``"plain"``, ``"gzip"``, ``"zstd"``, ``"bz2"`` or ``"zip"``, from the file's magic bytes.

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
    if head.startswith(BZ2_MAGIC) and head[3:4] in b"123456789":
        return "bz2"
    return "plain"


def _zip_data_member(path: Path, zf: zipfile.ZipFile) -> zipfile.ZipInfo:
    """The data member of a zip: the only non-documentation file, or a LOBSTER pair's message file."""
    members = [m for m in zf.infolist() if not m.is_dir()]
    data = [m for m in members if not m.filename.lower().endswith(_DOC_SUFFIXES)]
    if len(data) == 2:
        msg = [m for m in data if _PAIR[0] in m.filename]
        book = [m for m in data if _PAIR[1] in m.filename]
        if len(msg) == 1 and len(book) == 1:
            return msg[0]
    if len(data) != 1:
        names = ", ".join(m.filename for m in members) or "none"
        raise DataFormatError(path, None, f"zip archive must hold exactly one data file, found: {names}")
    return data[0]


def open_companion(path: Path, part: str) -> BinaryIO | None:
    """Open the companion of data file ``path`` named by ``part`` (e.g. ``"orderbook"``), or None.

    Looked for, in order: the zip member whose name has ``_<part>_`` (``path`` a zip); the
    file ``<path>.<part>`` (written by ``plain_copy`` beside a decompressed copy); the sibling
    whose name is ``path``'s with ``_message_`` replaced by ``_<part>_``.
    """
    if compression(path) == "zip":
        zf = zipfile.ZipFile(path)
        for m in zf.infolist():
            if f"_{part}_" in m.filename and not m.is_dir():
                return io.BufferedReader(zf.open(m), buffer_size=_BUFFER)  # type: ignore[arg-type]
        zf.close()
        return None
    for cand in (path.with_name(f"{path.name}.{part}"),
                 path.with_name(path.name.replace(_PAIR[0], f"_{part}_"))):
        if cand != path and cand.is_file():
            return open_binary(cand)
    return None


def open_binary(path: Path) -> BinaryIO:
    """Open ``path`` for reading decompressed bytes, whatever its compression.

    Args:
        path: the file.

    Returns:
        A buffered binary reader (iterate it for lines); close it (``with``).

    Raises:
        DataFormatError: a zip archive without exactly one data file (see the module docstring).
    """
    kind = compression(path)
    if kind == "bz2":
        return io.BufferedReader(bz2.BZ2File(path, "rb"), buffer_size=_BUFFER)  # type: ignore[arg-type]
    if kind == "gzip":
        return io.BufferedReader(gzip.GzipFile(path, "rb"), buffer_size=_BUFFER)  # type: ignore[arg-type]
    if kind == "zstd":
        import zstandard

        fh = open(path, "rb")  # noqa: SIM115 - closed with the returned reader
        reader = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True, closefd=True)
        return io.BufferedReader(reader, buffer_size=_BUFFER)  # type: ignore[arg-type]
    if kind == "zip":
        zf = zipfile.ZipFile(path)
        try:
            member = _zip_data_member(path, zf)
        except DataFormatError:
            zf.close()
            raise
        return io.BufferedReader(zf.open(member), buffer_size=_BUFFER)  # type: ignore[arg-type]
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
    # A LOBSTER zip: its orderbook member goes beside the copy (open_companion finds it
    # there); written first, so that the copy's presence still marks a complete result.
    comp = open_companion(src, "orderbook") if compression(src) == "zip" else None
    if comp is not None:
        with atomic_open(dst.with_name(f"{dst.name}.orderbook")) as out, comp:
            while chunk := comp.read(1 << 22):
                out.write(chunk)
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
