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

from biocap_assets.common.contract import BadInput

BLOCK = 512
END_OF_ARCHIVE = b"\0" * (2 * BLOCK)
# A member larger than this is refused, not read: TreeOfLife-10M's largest members are
# images of a few MB; a header declaring gigabytes is damage (or an attack on memory).
MAX_MEMBER_BYTES = 256 << 20
_CHUNK = 8 << 20
_REGULAR = (b"0", b"\0", b"7")


class TarFormatError(ValueError, BadInput):
    """The stream is not a readable tar archive (a retry would find it just as bad)."""


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
    # every block of the member, in order: extended headers, header, data, padding; kept
    # as the pieces read (the data is not copied again to join them)
    parts: tuple[bytes, ...]
    mtime: int
    mode_field: bytes  # the header's mode field, parsed only for the member that needs it
    is_file: bool

    @property
    def raw(self) -> bytes:
        return b"".join(self.parts)

    @property
    def size(self) -> int:
        return sum(len(p) for p in self.parts)

    @property
    def mode(self) -> int:
        return _number(self.mode_field, "mode", 0)


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
    if n <= _CHUNK:  # the usual case, in one call
        chunk = f.read(n)
        if len(chunk) == n:
            return chunk
        chunks, got = [chunk], len(chunk)
        if not chunk:
            raise TarFormatError(f"unexpected end of file at byte {offset} (wanted {n} more)")
    else:
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
    pending: list[bytes] = []  # the extended headers (x, L) before a member
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
        computed = sum(header) - sum(header[148:156]) + 8 * 32
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
        # the data and its padding read apart: the data is the member's bytes as they are
        data = _read_exact(f, size, offset + BLOCK) if size else b""
        pad = _read_exact(f, _padded(size) - size, offset + BLOCK + size) if size % BLOCK else b""
        at, offset = offset, offset + BLOCK + size + len(pad)
        if kind in (b"x", b"L"):
            pending += (header, data, pad)
            if kind == b"x":
                pax.update(_pax_records(data, at))
            else:
                long_name = _name(data.rstrip(b"\0"), at)
            continue
        if kind == b"g":  # global header: applies to all later members; pass it through
            yield RawMember("", b"", (*pending, header, data, pad), 0, b"", False)
            pending, pax, long_name = [], {}, None
            continue
        name = pax.get("path") or long_name or _name(name, at)
        try:
            pax_size = int(pax["size"]) if "size" in pax else size
            mtime = int(float(pax.get("mtime", _number(header[136:148], "mtime", at))))
        except (ValueError, OverflowError):
            raise TarFormatError(f"bad PAX size or mtime for {name!r} at byte {at}") from None
        if pax_size > size:
            raise TarFormatError(
                f"PAX size {pax_size} of {name!r} at byte {at} is larger than its data"
            )
        yield RawMember(
            name,
            data if pax_size == size else data[:pax_size],
            (*pending, header, data, pad),
            mtime,
            header[100:108],
            kind in _REGULAR,
        )
        pending, pax, long_name = [], {}, None


def member_bytes(name: str, data: bytes, mtime: int = 0, mode: int = 0o644) -> bytes:
    """A new regular-file member (header, data, padding), deterministic: the bytes
    ``tarfile`` writes for it in PAX format (a test holds the two equal)."""
    header = _ustar_header(name, len(data), mtime, mode)
    if header is None:
        header = _tarfile_header(name, len(data), mtime, mode)
    return header + data + b"\0" * (_padded(len(data)) - len(data))


# The one header a caption member needs, built directly: tarfile's TarInfo.tobuf spends
# about 37 us on it (a quarter of the rewrite's per-sample time on small images). Only the
# plain case (an ASCII name of at most 100 characters, numbers in their octal fields); any
# other goes through tarfile, which then writes a PAX header.
_USTAR_TAIL = b"0" + b"\0" * 100 + b"ustar\x0000" + b"\0" * (32 + 32 + 8 + 8 + 155 + 12)


def _ustar_header(name: str, size: int, mtime: int, mode: int) -> bytes | None:
    if len(name) > 100 or not name.isascii() or not (0 <= size < 8**11 and 0 <= mtime < 8**11):
        return None
    head = b"%s%s%07o\x00%07o\x00%07o\x00%011o\x00%011o\x00" % (
        name.encode("ascii"),
        b"\0" * (100 - len(name)),
        mode & 0o7777,
        0,
        0,
        size,
        mtime,
    )
    checksum = sum(head) + 8 * 32 + sum(_USTAR_TAIL)
    return head + b"%06o\x00 " % checksum + _USTAR_TAIL


def _tarfile_header(name: str, size: int, mtime: int, mode: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, mode
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
