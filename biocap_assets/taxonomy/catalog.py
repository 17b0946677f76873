"""Locate and check a TreeOfLife-10M ``catalog.csv`` before DuckDB scans it.

The real catalog is several GB, so problems must show up before the scan, and
name the file: a missing column, a file that is not a CSV, a URL that cannot be
read. Only the first block of the file is read here.
"""

from __future__ import annotations

import csv
import io
from urllib.parse import urlparse

import fsspec

from biocap_assets.common.secrets import redact
from biocap_assets.taxonomy.names import RANKS

REQUIRED_COLUMNS = ("treeoflife_id", *RANKS, "common")
_HEAD_BYTES = 64 * 1024


class CatalogError(ValueError):
    """The catalog cannot be used; the message names the file (credentials removed) and
    what is wrong."""

    def __init__(self, message: str):
        super().__init__(redact(message))


def local_path(url: str) -> str | None:
    """The filesystem path of a local URL (plain path or ``file://``), else None."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        return parsed.path if parsed.scheme == "file" else url
    if len(parsed.scheme) == 1:  # a Windows drive letter
        return url
    return None


def read_header(url: str, storage_options: dict | None = None) -> list[str]:
    """The catalog's column names, after checking it is a readable text CSV."""
    try:
        with fsspec.open(url, "rb", **(storage_options or {})) as f:
            head = f.read(_HEAD_BYTES)
    except FileNotFoundError as exc:
        if local_path(url) is not None:
            raise CatalogError(f"catalog {url}: no such file") from exc
        raise CatalogError(f"catalog {url}: cannot be read (not found: {exc})") from exc
    except Exception as exc:  # noqa: BLE001 - any transport error means "unreadable"
        raise CatalogError(f"catalog {url}: cannot be read ({type(exc).__name__}: {exc})") from exc
    if not head.strip():
        raise CatalogError(f"catalog {url}: the file is empty (expected a CSV header)")
    if b"\x00" in head:
        raise CatalogError(f"catalog {url}: not a CSV file (binary content)")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A cut multi-byte character at the end of the block is fine.
        if exc.start < len(head) - 4:
            raise CatalogError(f"catalog {url}: not UTF-8 text at byte {exc.start}") from exc
        text = head[: exc.start].decode("utf-8")
    first_line = text.removeprefix("\ufeff").splitlines()[0]  # a BOM is not a column
    header = next(csv.reader(io.StringIO(first_line)))
    return [h.strip().lower() for h in header]


def check_catalog(url: str, storage_options: dict | None = None) -> list[str]:
    """Raise :class:`CatalogError` unless every required column is present."""
    header = read_header(url, storage_options)
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        shown = ", ".join(header[:20]) + (" ..." if len(header) > 20 else "")
        raise CatalogError(
            f"catalog {url}: missing column(s) {', '.join(missing)}; the header has: {shown}"
        )
    return header


def locate_bad_line(url: str, columns: int, storage_options: dict | None = None) -> str:
    """Where the catalog first stops being a UTF-8 CSV of ``columns`` columns: "line N: what",
    or "" if no line is found wrong. One streaming pass, only after DuckDB failed without
    naming a line."""
    with fsspec.open(url, "rb", **(storage_options or {})) as f:
        reader = csv.reader(_utf8_lines(f))
        try:
            for row in reader:
                if len(row) != columns:
                    return (
                        f"line {reader.line_num}: {len(row)} fields where the header has "
                        f"{columns} (a stray line break or quote?)"
                    )
        except _NotUtf8 as exc:
            return f"line {exc.line}: not UTF-8 text (byte {exc.byte!r})"
        except csv.Error as exc:
            if "new-line character" in str(exc):
                return f"line {reader.line_num}: a line break (CR) inside an unquoted field"
            return f"line {reader.line_num}: {exc}"
    return ""


class _NotUtf8(ValueError):
    def __init__(self, line: int, byte: bytes):
        super().__init__(line, byte)
        self.line, self.byte = line, byte


def _utf8_lines(f):
    """Physical lines as text (newline kept, as the csv module wants them), line-numbered."""
    for number, raw in enumerate(f, start=1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _NotUtf8(number, raw[exc.start : exc.start + 1]) from None
