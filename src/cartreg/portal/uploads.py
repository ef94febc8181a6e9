"""Receiving a site's upload: file names, types and sizes checked, zips unpacked safely.

Nothing a browser declares is trusted: not the file name (reduced to a checked relative path),
not the content type (ignored; the content must match the extension's signature), not the sizes
in a zip's directory (bytes are counted while unpacking). Refused on the spot, with a message
saying what and how to fix:

* names with a folder part, ``..``, a drive, a control character, or a leading dot;
* zip entries outside the upload folder (zip slip), links, encrypted entries, too many entries,
  too many bytes unpacked, or a compression ratio only a zip bomb has;
* files of a type no reader takes, and files whose bytes are not what their extension says
  (a ``.csv`` holding a binary, an ``.xlsx`` that is not a zip, ...).
"""

from __future__ import annotations

import shutil
import stat
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO

from cartreg.errors import ZIP_DAMAGE, ZIP_ENTRY_DAMAGE, InputError
from cartreg.portal.config import Limits

TEXT_TYPES = frozenset(
    {".csv", ".tsv", ".txt", ".json", ".ndjson", ".jsonl", ".md", ".yaml", ".yml"}
)
BINARY_SIGNATURES = {
    ".xlsx": (b"PK\x03\x04",),
    ".xls": (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",),
    ".parquet": (b"PAR1",),
}
ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")
# Starts of files that are never text, whatever their name says.
_BINARY_STARTS = (
    b"PK\x03\x04",
    b"PAR1",
    b"%PDF",
    b"MZ",
    b"\x7fELF",
    b"\xd0\xcf\x11\xe0",
    b"\x1f\x8b",
)
_SNIFF_BYTES = 64 * 1024
_CHUNK = 1024 * 1024
_IGNORED_IN_ZIP = ("__MACOSX/",)
_IGNORED_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})


class UploadRejected(InputError):
    """The upload cannot be accepted as sent (shown to the site; HTTP 400 or 413)."""

    def __init__(self, message: str, *, hint: str = "", too_large: bool = False) -> None:
        self.too_large = too_large
        super().__init__(message, hint=hint)


@dataclass(frozen=True)
class ReceivedFile:
    name: str  # path relative to the upload folder, with '/'
    size: int


def allowed_types() -> str:
    return ", ".join(sorted(TEXT_TYPES | set(BINARY_SIGNATURES) | {".zip"}))


def safe_relative_path(name: str, *, allow_folders: bool) -> PurePosixPath:
    """``name`` as a relative path that stays inside the upload folder, or UploadRejected."""
    shown = name.encode("unicode_escape").decode("ascii")[:120]
    if not name or len(name) > 1024 or any(ord(ch) < 32 or ch == "\x7f" for ch in name):
        raise UploadRejected(f"file name {shown!r} is not allowed")
    text = name.replace("\\", "/")
    if text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        raise UploadRejected(f"file name {shown!r} is an absolute path", hint="send the file only")
    parts = text.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise UploadRejected(
            f"file name {shown!r} points outside the upload", hint="send the file only"
        )
    if len(parts) > 1 and not allow_folders:
        raise UploadRejected(f"file name {shown!r} has a folder part", hint="send the file only")
    if any(p.startswith(".") for p in parts) or any(len(p) > 255 for p in parts):
        raise UploadRejected(f"file name {shown!r} is not allowed (hidden or too long)")
    return PurePosixPath(*parts)


def _check_content(path: Path, relative: str) -> None:
    """The bytes of ``path`` must be what its extension says."""
    suffix = path.suffix.lower()
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
        if suffix in TEXT_TYPES:
            # UTF-16 text (with its byte-order mark) is half NUL bytes, and the readers take it
            utf16 = head.startswith((b"\xff\xfe", b"\xfe\xff"))
            if (b"\x00" in head and not utf16) or head.startswith(_BINARY_STARTS):
                raise UploadRejected(
                    f"{relative} is not a text file (binary content under a {suffix} name)",
                    hint="export the data as text, or send the original file with its own "
                    "extension",
                )
            return
        if suffix in BINARY_SIGNATURES:
            if not head.startswith(BINARY_SIGNATURES[suffix]):
                raise UploadRejected(
                    f"{relative} is not a {suffix} file (its content does not start like one)"
                )
            if suffix == ".parquet":
                handle.seek(max(0, path.stat().st_size - 4))
                if handle.read(4) != b"PAR1":
                    raise UploadRejected(f"{relative} is a truncated or broken Parquet file")
            return
    raise UploadRejected(
        f"{relative}: files of type {suffix or '(none)'} are not accepted",
        hint=f"accepted: {allowed_types()}",
    )


class _Budget:
    """Counts bytes and files written for one upload against its limits."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.files = 0
        self.unpacked = 0

    def add_file(self) -> None:
        self.files += 1
        if self.files > self.limits.files:
            raise UploadRejected(
                f"more than {self.limits.files} files in one upload",
                hint="send only the files of the export",
            )

    def add_bytes(self, n: int) -> None:
        self.unpacked += n
        if self.unpacked > self.limits.unzipped_bytes:
            raise UploadRejected(
                f"the upload unpacks to more than {self.limits.unzipped_bytes // (1 << 20)} MB",
                hint="split the export or ask the coordinator to raise the limit",
                too_large=True,
            )


def _copy(source: IO[bytes], target: Path, budget: _Budget, *, cap: int | None = None) -> int:
    written = 0
    with target.open("xb") as out:
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            budget.add_bytes(len(chunk))
            if cap is not None and written > cap:
                raise UploadRejected(f"{target.name}: more bytes than the zip says it holds")
            out.write(chunk)
    return written


def _strip_common_folder(paths: list[PurePosixPath]) -> list[PurePosixPath]:
    """``export/a.csv, export/b.csv`` -> ``a.csv, b.csv`` (a zip of a folder)."""
    tops = {p.parts[0] for p in paths}
    if len(tops) == 1 and all(len(p.parts) > 1 for p in paths):
        return [PurePosixPath(*p.parts[1:]) for p in paths]
    return paths


def _unpack_zip(archive: Path, shown: str, dest: Path, budget: _Budget) -> list[ReceivedFile]:
    try:
        zf = zipfile.ZipFile(archive)
    except ZIP_DAMAGE:
        raise UploadRejected(f"{shown} is not a readable zip archive") from None
    with zf:
        entries = []
        for info in zf.infolist():
            name = info.filename
            base = name.replace("\\", "/").rsplit("/", 1)[-1]
            if info.is_dir() or name.startswith(_IGNORED_IN_ZIP) or base in _IGNORED_NAMES:
                continue
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise UploadRejected(f"{shown}: entry {name!r} is a link", hint="zip the files")
            if info.flag_bits & 0x1:
                raise UploadRejected(f"{shown}: entry {name!r} is encrypted", hint="zip it plain")
            entries.append((safe_relative_path(name, allow_folders=True), info))
        if not entries:
            raise UploadRejected(f"{shown} holds no files")
        declared = sum(info.file_size for _, info in entries)
        if declared > budget.limits.unzipped_bytes:
            budget.add_bytes(declared)  # raises with the limit in the message
        paths = _strip_common_folder([p for p, _ in entries])
        received = []
        root = dest.resolve()
        for relative, (_, info) in zip(paths, entries, strict=True):
            ratio = info.file_size // max(info.compress_size, 1)
            if info.file_size > _CHUNK and ratio > budget.limits.zip_ratio:
                raise UploadRejected(
                    f"{shown}: entry {info.filename!r} expands {ratio} times (a zip bomb?)",
                    too_large=True,
                )
            if relative.suffix.lower() == ".zip":
                raise UploadRejected(f"{shown}: a zip inside a zip ({relative}) is not unpacked")
            target = dest.joinpath(*relative.parts)
            if not target.resolve().is_relative_to(root):
                raise UploadRejected(f"{shown}: entry {info.filename!r} points outside the upload")
            if target.exists():
                raise UploadRejected(f"{relative} is sent twice", hint="send each file once")
            budget.add_file()
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as source:
                    size = _copy(source, target, budget, cap=info.file_size)
            except ZIP_ENTRY_DAMAGE:
                raise UploadRejected(
                    f"{shown}: entry {info.filename!r} cannot be unpacked (damaged, or packed "
                    "with a method zip tools rarely use)",
                    hint="zip the files again with a standard zip tool",
                ) from None
            _check_content(target, str(relative))
            received.append(ReceivedFile(relative.as_posix(), size))
        return received


def receive_files(
    files: Iterable[tuple[str | None, BinaryIO]], dest: Path, limits: Limits
) -> list[ReceivedFile]:
    """Check and write the uploaded ``(file name, stream)`` pairs into the empty folder ``dest``.

    Zips are unpacked (one common top folder dropped). Raises UploadRejected; ``dest`` may then
    hold part of the upload, and the caller removes it.
    """
    dest.mkdir(parents=True, exist_ok=True)
    budget = _Budget(limits)
    received: list[ReceivedFile] = []
    any_file = False
    for raw_name, stream in files:
        if not raw_name:
            continue  # an empty file input
        any_file = True
        relative = safe_relative_path(raw_name, allow_folders=False)
        name = relative.as_posix()
        if relative.suffix.lower() == ".zip":
            staging = dest.parent / f".{dest.name}.zip"
            staging.unlink(missing_ok=True)
            try:
                with staging.open("wb") as out:
                    shutil.copyfileobj(stream, out, _CHUNK)
                with staging.open("rb") as head:
                    if not head.read(4).startswith(ZIP_SIGNATURES):
                        raise UploadRejected(f"{name} is not a zip archive")
                received.extend(_unpack_zip(staging, name, dest, budget))
            finally:
                staging.unlink(missing_ok=True)
            continue
        target = dest / name
        if target.exists():
            raise UploadRejected(f"{name} is sent twice", hint="send each file once")
        budget.add_file()
        size = _copy(stream, target, budget)
        _check_content(target, name)
        received.append(ReceivedFile(name, size))
    if not any_file:
        raise UploadRejected("no file was sent", hint="choose the export's files or one zip")
    return received


def require_files(received: list[ReceivedFile], expected: list[str]) -> None:
    """Refuse an upload without every file the site's mapping reads, before it is queued: a
    site that sent the wrong export learns it at once, with the names it should send."""
    names = {f.name for f in received}
    missing = [name for name in expected if name not in names]
    if missing:
        sent = ", ".join(sorted(names))
        raise UploadRejected(
            f"the upload has no {', '.join(missing)} (it holds {sent})",
            hint=f"your site's mapping reads {', '.join(expected)}: send those files",
        )
