"""Open recordings whatever their compression, and keep decompressed copies for seeking.

One job: get the decompressed bytes of a data file. The compression is sniffed from the file's
magic bytes, never from its name (recorders and exchanges name files inconsistently).

Names (internal to the data layer; the public entry points are in ``data_processor``):

- ``compression(path)``: ``"plain"``, ``"gzip"``, ``"zstd"``, ``"bz2"`` or ``"zip"``.
- ``open_binary(path)``: a buffered reader of the decompressed bytes (a zip archive must hold
  one data file, documentation members such as a ReadMe aside, or a LOBSTER message +
  orderbook pair, whose message file is the data; ``DataFormatError`` otherwise); a cut,
  corrupt or junk container raises ``DamagedFile`` (a ``DataFormatError`` naming the
  user's file) while it is read.
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
import struct
import time
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from messages import DataFormatError
from utils import atomic_open

__all__ = ["DamagedFile", "as_paths", "compression", "mark_used", "open_binary", "open_companion",
           "plain_copy"]

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ZIP_MAGIC = b"PK\x03\x04"
BZ2_MAGIC = b"BZh"
_DOC_SUFFIXES = (".txt", ".md", ".pdf", ".html")  # zip members that document, not data
_PAIR = ("_message_", "_orderbook_")  # a LOBSTER zip: the message file is the data
_BUFFER = 1 << 20  # read buffer of every opened file, bytes
_CHUNK = 1 << 16  # most decompressed bytes asked of a decompressor at once


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


class DamagedFile(DataFormatError):
    """A compressed container that cannot be decompressed to its end (cut, corrupt, junk).

    Raised by the streams ``open_binary`` returns, naming the user's file; the data layer's
    reading loops add the last line they read (``Reader``). Never skipped by
    ``on_error="skip"``: what follows the damage is unknown.
    """


def _damage_reason(kind: str, exc: BaseException) -> str:
    """The one-line reason of a decompression error."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, EOFError) or "ended before" in text:
        what = "ends before the end of its compressed stream (a cut or incomplete download?)"
    elif "CRC" in text or "crc" in text or "checksum" in text.lower():
        what = "fails its checksum (the file is corrupt)"
    elif "Not a gzipped file" in text or "Unknown frame descriptor" in text:
        what = "has bytes after its compressed data that are not compressed data (trailing garbage)"
    else:
        what = "is not valid compressed data"
    return f"damaged {kind} file: it {what} [{type(exc).__name__}: {text}]"


def _decompression_errors() -> tuple[type[BaseException], ...]:
    """The exception types the decompressors raise for damaged input."""
    errs: list[type[BaseException]] = [EOFError, zlib.error, gzip.BadGzipFile, zipfile.BadZipFile,
                                       struct.error]
    try:
        import zstandard

        errs.append(zstandard.ZstdError)
    except ImportError:  # pragma: no cover - zstandard is a requirement
        pass
    return tuple(errs)


class _Guarded(io.RawIOBase):
    """A raw stream over a decompressor that words any decompression error as ``DamagedFile``."""

    def __init__(self, inner: BinaryIO, path: Path, kind: str) -> None:
        super().__init__()
        self._inner = inner
        self._path = path
        self._kind = kind
        # bz2 words a corrupt stream as a plain OSError ("Invalid data stream")
        self._errors = _decompression_errors() + ((OSError,) if kind == "bz2" else ())
        self.delivered = 0  # decompressed bytes handed out so far

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        try:
            # at most _CHUNK per call: the lines before a damage reach the reader before the
            # error does (a 1 MiB request would lose them with the error)
            n = self._inner.readinto(memoryview(b)[:_CHUNK])  # type: ignore[attr-defined]
        except self._errors as e:
            raise DamagedFile(self._path, None, _damage_reason(self._kind, e)) from None
        self.delivered += n
        return n

    def close(self) -> None:
        if not self.closed:
            self._inner.close()
        super().close()


class _ZstdRaw(io.RawIOBase):
    """Decompress every zstd frame of a file, refusing one that stops before its end.

    ``zstandard``'s ``stream_reader`` returns a cut frame's bytes and then a clean end of file
    (measured with zstandard 0.25: half a file read without an error), so the frames are run
    through ``decompressobj`` here and the end of the file must fall between two frames.
    """

    def __init__(self, fh: BinaryIO) -> None:
        import zstandard

        super().__init__()
        self._fh = fh
        self._dctx = zstandard.ZstdDecompressor()
        self._obj = self._dctx.decompressobj()
        self._open_frame = False  # bytes of a frame fed whose end has not come yet
        self._out = b""
        self._pos = 0
        self._error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        while True:
            if self._error is not None:  # after the bytes decoded before it were handed out
                raise self._error
            chunk = self._fh.read(_BUFFER)
            if not chunk:
                if self._open_frame:
                    raise EOFError("zstd: compressed file ended before the end-of-frame marker was reached")
                return False
            parts = []
            try:
                while chunk:
                    parts.append(self._obj.decompress(chunk))
                    if self._obj.eof:
                        chunk = self._obj.unused_data
                        self._obj = self._dctx.decompressobj()
                        self._open_frame = False
                    else:
                        self._open_frame = True
                        chunk = b""
            except Exception as e:  # noqa: BLE001 - any decoder error: raised by the next call
                self._error = e
            out = b"".join(parts)
            if out:
                self._out, self._pos = out, 0
                return True

    def readinto(self, b: Any) -> int:
        if self._pos >= len(self._out) and not self._fill():
            return 0
        n = min(len(b), len(self._out) - self._pos)
        b[:n] = self._out[self._pos:self._pos + n]
        self._pos += n
        return n

    def close(self) -> None:
        if not self.closed:
            self._fh.close()
        super().close()


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
        try:
            zf = zipfile.ZipFile(path)
        except _decompression_errors() as e:
            raise DamagedFile(path, None, _damage_reason("zip", e)) from None
        for m in zf.infolist():
            if f"_{part}_" in m.filename and not m.is_dir():
                return io.BufferedReader(_Guarded(zf.open(m), path, "zip"),  # type: ignore[arg-type]
                                         buffer_size=_BUFFER)
        zf.close()
        return None
    for cand in (path.with_name(f"{path.name}.{part}"),
                 path.with_name(path.name.replace(_PAIR[0], f"_{part}_"))):
        if cand != path and cand.is_file():
            return open_binary(cand)
    return None


def open_binary(path: Path, name: str | os.PathLike | None = None) -> BinaryIO:
    """Open ``path`` for reading decompressed bytes, whatever its compression.

    Args:
        path: the file.
        name: the file named in errors (default ``path``).

    Returns:
        A buffered binary reader (iterate it for lines); close it (``with``).

    Raises:
        DataFormatError: a zip archive without exactly one data file (see the module docstring).
        DamagedFile: (while reading) the compressed data is cut, corrupt or junk.
    """
    kind = compression(path)
    shown = Path(name) if name is not None else path
    if kind == "plain":
        return open(path, "rb", buffering=_BUFFER)  # noqa: SIM115
    try:
        if kind == "gzip":
            inner: Any = gzip.GzipFile(path, "rb")
        elif kind == "bz2":
            inner = bz2.BZ2File(path, "rb")
        elif kind == "zstd":
            inner = _ZstdRaw(open(path, "rb"))  # noqa: SIM115 - closed with the returned reader
        else:
            zf = zipfile.ZipFile(path)
            try:
                member = _zip_data_member(shown, zf)
            except DataFormatError:
                zf.close()
                raise
            inner = zf.open(member)
    except _decompression_errors() as e:
        raise DamagedFile(shown, None, _damage_reason(kind, e)) from None
    return io.BufferedReader(_Guarded(inner, shown, kind), buffer_size=_BUFFER)  # type: ignore[arg-type]


def mark_used(path: Path) -> None:
    """Set a cache file's atime to now, keeping its mtime (the cache's LRU order)."""
    try:
        st = path.stat()
        os.utime(path, ns=(time.time_ns(), st.st_mtime_ns))
    except OSError:  # removed meanwhile, or a read-only cache: the order is only a hint
        pass


def plain_copy(src: Path, cache_dir: Path, fingerprint: dict) -> Path:
    """Decompress ``src`` once into ``cache_dir`` (atomic: temp file + fsync + rename).

    Args:
        src: a compressed file.
        cache_dir: the cache folder (exists).
        fingerprint: the source's fingerprint (its content hash at least); it keys the copy's
            name, so a changed source gets a new copy.

    Returns:
        The path of the decompressed copy, ``<name>.<key>.plain``.

    Raises:
        DamagedFile: the source cannot be decompressed to its end; no partial copy is left
            (the temp file is removed) and the error names ``src`` and the last whole line.
    """
    key = hashlib.sha256(orjson.dumps(fingerprint)).hexdigest()[:16]
    dst = cache_dir / f"{src.name}.{key}.plain"
    if dst.is_file():
        mark_used(dst)
        return dst
    # A LOBSTER zip: its orderbook member goes beside the copy (open_companion finds it
    # there); written first, so that the copy's presence still marks a complete result.
    comp = open_companion(src, "orderbook") if compression(src) == "zip" else None
    if comp is not None:
        with atomic_open(dst.with_name(f"{dst.name}.orderbook")) as out, comp:
            while chunk := comp.read(1 << 22):
                out.write(chunk)
    lines = 0
    try:
        with atomic_open(dst) as out, open_binary(src) as fh:  # streamed, never whole in memory
            while chunk := fh.read(1 << 22):
                lines += chunk.count(b"\n")
                out.write(chunk)
    except DamagedFile as e:
        read = f"lines 1-{lines} were read before it" if lines else "no complete line was read before it"
        raise DamagedFile(src, None, f"{e.reason}; {read}") from None
    return dst


def as_paths(path_or_paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """The input files of one recording, in order, each checked to be a file.

    Args:
        path_or_paths: one path, or a sequence of paths.

    Returns:
        The paths as ``Path`` objects.

    Raises:
        ValueError: an empty sequence.
        IsADirectoryError: a folder.
        FileNotFoundError: a path that is not a file.
    """
    if isinstance(path_or_paths, str | os.PathLike):
        paths = [Path(path_or_paths)]
    else:
        paths = [Path(p) for p in path_or_paths]
    if not paths:
        raise ValueError("no input file given")
    for p in paths:
        if p.is_dir():
            raise IsADirectoryError(f"{p}: is a directory, not a data file (name the file(s) inside it)")
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such file")
    return paths
