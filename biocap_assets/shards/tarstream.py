"""A minimal streaming tar reader that keeps each member's raw bytes.

Re-captioning copies every input member through unchanged, so the fastest and
most faithful copy is the member's own blocks: header(s), data and padding, byte
for byte. This reader yields them, with the few fields we need parsed (name,
size, type, mtime, mode). It understands ustar, PAX extended headers (``x``,
``g``) and GNU long names (``L``), and checks header checksums so that a file
that is not a tar fails loudly. New members are built with ``tarfile``.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

BLOCK = 512
END_OF_ARCHIVE = b"\0" * (2 * BLOCK)
# A member larger than this is refused, not read: TreeOfLife-10M's largest members are
# images of a few MB; a header declaring gigabytes is damage (or an attack on memory).
MAX_MEMBER_BYTES = 256 << 20
_CHUNK = 8 << 20
_REGULAR = (b"0", b"\0", b"7")


class TarFormatError(ValueError):
    """The stream is not a readable tar archive."""


# Magic numbers of compressed files: a shard must be a plain tar here.
_COMPRESSED = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)


def _compression(block: bytes) -> str | None:
    return next((name for magic, name in _COMPRESSED if block.startswith(magic)), None)


@dataclass
class RawMember:
    name: str
    data: bytes
    raw: bytes  # every block of the member: extended headers, header, data, padding
    mtime: int
    mode: int
    is_file: bool


def _padded(size: int) -> int:
    return (size + BLOCK - 1) // BLOCK * BLOCK


def _number(field: bytes, what: str, offset: int) -> int:
    if field and field[0] & 0x80:  # GNU base-256
        value = int.from_bytes(field[1:], "big")
        return value
    text = field.rstrip(b"\0 ").strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise TarFormatError(
            f"bad tar header at byte {offset}: its {what} field {text[:16]!r} is not an octal "
            "number"
        ) from None


def _read_exact(f: BinaryIO, n: int, offset: int) -> bytes:
    """``n`` bytes, read in chunks so that a declared size the file does not hold costs no
    more memory than what is there."""
    chunks, got = [], 0
    while got < n:
        chunk = f.read(min(n - got, _CHUNK))
        if not chunk:
            raise TarFormatError(
                f"unexpected end of file at byte {offset + got} (wanted {n - got} more)"
            )
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _name(raw: bytes, offset: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise TarFormatError(
            f"member name {raw[:60]!r} at byte {offset} is not UTF-8 (webdataset keys are)"
        ) from None


def _pax_records(data: bytes, offset: int) -> dict[str, str]:
    """``"<length> <key>=<value>\\n"`` records; each must move forward, or this fails."""
    records, pos = {}, 0
    while pos < len(data):
        if not data[pos:].strip(b"\0"):
            break  # padding after the last record
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space]) if space > pos else -1
        except ValueError:
            length = -1
        if length <= space - pos or pos + length > len(data):
            raise TarFormatError(f"bad PAX extended header at byte {offset}: malformed record")
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        key = key.decode("utf-8", "surrogateescape")
        # the path names a sample, so it must be text; other values (xattrs) may be binary
        records[key] = (
            _name(value, offset) if key == "path" else value.decode("utf-8", "surrogateescape")
        )
        pos += length
    return records


def iter_raw_members(f: BinaryIO) -> Iterator[RawMember]:
    offset = 0
    pending: list[bytes] = []
    pax: dict[str, str] = {}
    long_name: str | None = None
    while True:
        header = f.read(BLOCK)
        if offset == 0 and header and (kind := _compression(header)):
            raise TarFormatError(
                f"the shard is {kind}-compressed; shards must be plain (uncompressed) tar "
                f"files, as TreeOfLife-10M ships them: decompress it first"
            )
        if not header:
            # A tar ends with zero blocks; a file that just stops was cut (here, between
            # two members, so no member is half there to notice it).
            raise TarFormatError(
                f"the archive stops at byte {offset} without its end-of-archive marker (truncated?)"
            )
        if header == b"\0" * BLOCK:
            if pending:
                raise TarFormatError(f"archive ends inside a member at byte {offset}")
            return
        if len(header) < BLOCK:
            header += _read_exact(f, BLOCK - len(header), offset + len(header))
        stored = _number(header[148:156], "checksum", offset)
        computed = sum(header[:148]) + 8 * 32 + sum(header[156:])
        if stored != computed:
            raise TarFormatError(f"not a tar archive: bad header checksum at byte {offset}")
        size = _number(header[124:136], "size", offset)
        kind = header[156:157]
        name = header[0:100].rstrip(b"\0")
        if header[257:262] == b"ustar" and header[345:500].strip(b"\0"):
            name = header[345:500].rstrip(b"\0") + b"/" + name
        if size > MAX_MEMBER_BYTES:
            raise TarFormatError(
                f"member {name[:60].decode('utf-8', 'replace')!r} at byte {offset} declares "
                f"{size} bytes, above the {MAX_MEMBER_BYTES >> 20} MiB a member may have"
            )
        body = _read_exact(f, _padded(size), offset + BLOCK) if size else b""
        at, offset = offset, offset + BLOCK + len(body)
        if kind in (b"x", b"L"):
            pending.append(header + body)
            if kind == b"x":
                pax.update(_pax_records(body[:size], at))
            else:
                long_name = _name(body[:size].rstrip(b"\0"), at)
            continue
        if kind == b"g":  # global header: applies to all later members; pass it through
            yield RawMember("", b"", b"".join(pending) + header + body, 0, 0, False)
            pending, pax, long_name = [], {}, None
            continue
        name = pax.get("path") or long_name or _name(name, at)
        try:
            size = int(pax.get("size", size))
            mtime = int(float(pax.get("mtime", _number(header[136:148], "mtime", at))))
        except (ValueError, OverflowError):
            raise TarFormatError(f"bad PAX size or mtime for {name!r} at byte {at}") from None
        if size > len(body):
            raise TarFormatError(
                f"PAX size {size} of {name!r} at byte {at} is larger than its data"
            )
        raw = b"".join(pending) + header + body
        yield RawMember(
            name,
            body[:size],
            raw,
            mtime,
            _number(header[100:108], "mode", at),
            kind in _REGULAR,
        )
        pending, pax, long_name = [], {}, None


def member_bytes(name: str, data: bytes, mtime: int = 0, mode: int = 0o644) -> bytes:
    """A new regular-file member (header, data, padding), deterministic."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), mtime, mode
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    return header + data + b"\0" * (_padded(len(data)) - len(data))
