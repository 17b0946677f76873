"""Shards and images made by someone else, damaged or hostile: each gives a clear error
naming the shard, member and byte, or a counted bad sample; never a hang, a swap or a
silent loss. Every fixture is built here, small."""

import io
import struct
import tarfile
import zlib

import pytest
from PIL import Image

from biocap_assets.common.images import MAX_PIXELS
from biocap_assets.inference.tasks import CaptionOutcome
from biocap_assets.shards.rewrite import image_problem, rewrite_shard
from biocap_assets.shards.tarstream import (
    END_OF_ARCHIVE,
    MAX_MEMBER_BYTES,
    TarFormatError,
    iter_raw_members,
)
from biocap_assets.shards.tarwrite import DeterministicTarWriter


def jpeg(size=(8, 8), color=(10, 120, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "JPEG")
    return out.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A few-hundred-byte PNG whose header declares ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def jpeg_declaring(width: int, height: int) -> bytes:
    """A real small JPEG with its frame header (SOF0) patched to claim another size."""
    data = bytearray(jpeg())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def shard(samples: list[dict]) -> bytes:
    out = io.BytesIO()
    with DeterministicTarWriter(out) as writer:
        for sample in samples:
            writer.write(sample)
    return out.getvalue()


def sample(key: str, species: str, image: bytes | None = None) -> dict:
    return {
        "__key__": key,
        "jpg": jpeg() if image is None else image,
        "taxonomic_name.txt": f"Animalia Chordata Aves Passeriformes Corvidae Corvus {species}",
        "taxonTag.txt": (
            f"a photo of Animalia Chordata Aves Passeriformes Corvidae Corvus {species}."
        ),
        "scientific_name.txt": f"Corvus {species}",
        "common_name.txt": f"{species} crow",
    }


class EchoCaptioner:
    """Captions each sample with its own scientific name, so a swap would show."""

    backend, model, prompt, prompt_sha256 = "echo", "echo", "", ""

    def __init__(self):
        from collections import Counter

        self.examples_used = Counter()

    def caption_batch(self, items):
        return [CaptionOutcome(f"A photo of {i.names.scientific}.", None) for i in items]


def captions_of(data: bytes) -> list[tuple[str, str]]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [
            (m.name, tar.extractfile(m).read().decode())
            for m in tar.getmembers()
            if m.name.endswith(".caption.txt")
        ]


def header(name: bytes, size: int, kind: bytes = b"0", mtime: int = 0) -> bytes:
    """A ustar header block with any name bytes and any declared size (tarfile would
    refuse to write some of these)."""
    block = bytearray(512)
    block[0 : len(name)] = name
    block[100:108] = b"0000644\0"
    block[108:116] = block[116:124] = b"0000000\0"
    block[124:136] = f"{size:011o}\0".encode()
    block[136:148] = f"{mtime:011o}\0".encode()
    block[156:157] = kind
    block[257:263] = b"ustar\0"
    block[263:265] = b"00"
    block[148:156] = b" " * 8
    block[148:156] = f"{sum(block):06o}\0 ".encode()
    return bytes(block)


def pax(records: dict[str, str]) -> bytes:
    body = b""
    for key, value in records.items():
        text = f" {key}={value}\n".encode()
        length = len(text) + len(str(len(text)))
        length = len(text) + len(str(length))
        body += str(length).encode() + text
    return header(b"././@PaxHeader", len(body), b"x") + body + b"\0" * (-len(body) % 512)


def read_all(data: bytes) -> list:
    return list(iter_raw_members(io.BytesIO(data)))


def test_a_member_declaring_gigabytes_is_refused_before_reading():
    data = header(b"key.jpg", 8 << 30) + b"\0" * 1024
    with pytest.raises(TarFormatError, match=r"'key.jpg' at byte 0 declares 8589934592 bytes"):
        read_all(data)
    assert MAX_MEMBER_BYTES < 8 << 30


@pytest.mark.parametrize("mtime", ["nan", "inf", "-inf", "1e400", "soon"])
def test_a_bad_pax_mtime_names_the_member_and_byte(mtime):
    data = jpeg()
    tar = (
        header(b"first.txt", 0)
        + pax({"mtime": mtime})
        + header(b"key.jpg", len(data))
        + data
        + b"\0" * (-len(data) % 512)
        + END_OF_ARCHIVE
    )
    with pytest.raises(TarFormatError, match=r"mtime for 'key.jpg' at byte 1536"):
        read_all(tar)


def test_a_pax_size_beyond_the_data_is_an_error():
    tar = pax({"size": "999999"}) + header(b"key.jpg", 10) + b"x" * 512 + END_OF_ARCHIVE
    with pytest.raises(TarFormatError, match="PAX size 999999 of 'key.jpg' at byte 1024"):
        read_all(tar)


@pytest.mark.parametrize("name", [b"caf\xe9.jpg", b"\xff\xfe.jpg"], ids=["latin-1", "garbage"])
def test_a_key_that_is_not_utf8_is_an_error_naming_the_byte(name):
    tar = header(b"ok.txt", 0) + header(name, 0) + END_OF_ARCHIVE
    with pytest.raises(TarFormatError, match="at byte 512 is not UTF-8"):
        read_all(tar)
    long_name = (
        header(b"././@LongLink", len(name), b"L")
        + name
        + b"\0" * (-len(name) % 512)
        + header(b"short", 0)
        + END_OF_ARCHIVE
    )
    with pytest.raises(TarFormatError, match="not UTF-8"):
        read_all(long_name)


@pytest.mark.parametrize("data", [b"", END_OF_ARCHIVE], ids=["0 bytes", "no members"])
def test_an_empty_shard_fails_naming_it(data):
    with pytest.raises(TarFormatError, match="shard-000007.tar"):
        rewrite_shard(
            io.BytesIO(data), io.BytesIO(), EchoCaptioner(), source="input shard-000007.tar"
        )


def test_errors_inside_a_shard_name_the_shard(tmp_path):
    whole = b"".join(m.raw for m in read_all(shard([sample("a", "corax")])))
    damaged = whole + header(b"b.jpg", 8 << 30)  # a second sample's member, absurd
    with pytest.raises(TarFormatError) as caught:
        rewrite_shard(
            io.BytesIO(damaged), io.BytesIO(), EchoCaptioner(), source="input shard-000003.tar"
        )
    assert str(caught.value).startswith(
        f"input shard-000003.tar: member 'b.jpg' at byte {len(whole)} declares"
    )


def test_duplicate_keys_in_one_batch_keep_their_own_captions():
    """webdataset groups consecutive members by key, so a key that comes back later is a
    second sample: each keeps its own caption, never the other's."""
    first = shard([sample("dup", "corax"), sample("other", "frugilegus")])
    again = shard([sample("dup", "monedula")])
    data = b"".join(m.raw for m in read_all(first) + read_all(again)) + END_OF_ARCHIVE
    out = io.BytesIO()
    stats = rewrite_shard(io.BytesIO(data), out, EchoCaptioner(), batch_size=8)
    assert stats.samples == 3 and stats.captioned == 3
    assert captions_of(out.getvalue()) == [
        ("dup.caption.txt", "A photo of Corvus corax."),
        ("other.caption.txt", "A photo of Corvus frugilegus."),
        ("dup.caption.txt", "A photo of Corvus monedula."),
    ]


@pytest.mark.parametrize(
    "image",
    [png_declaring(100_000, 100_000), jpeg_declaring(65_000, 65_000), png_declaring(9_500, 9_500)],
    ids=["png 10^10 px", "jpeg 4*10^9 px", "png just above the cap"],
)
def test_an_image_bomb_is_a_bad_image_of_its_own(image):
    assert MAX_PIXELS < 9_500 * 9_500
    assert image_problem(image) == "bad_image"
    data = shard([sample("bomb", "corax", image), sample("fine", "frugilegus")])
    out = io.BytesIO()
    stats = rewrite_shard(io.BytesIO(data), out, EchoCaptioner())
    assert (stats.samples, stats.bad_image, stats.captioned) == (2, 1, 1)
    assert captions_of(out.getvalue()) == [("fine.caption.txt", "A photo of Corvus frugilegus.")]
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        assert "bomb.jpg" in tar.getnames(), "a bad sample is copied through, uncaptioned"


def test_an_image_bomb_or_an_escaping_name_in_a_benchmark_counts_as_missing(tmp_path):
    import torch

    from biocap_assets.evaluation.runner import STYLES, ImageEmbedder, image_paths

    class TinyModel:  # a double for the CLIP model: one number per image
        def encode_image(self, tensors, head, normalize=False):
            return tensors.flatten(1).mean(dim=1, keepdim=True)

    root = tmp_path / "images"
    root.mkdir()
    (root / "fine.jpg").write_bytes(jpeg())
    (root / "bomb.png").write_bytes(png_declaring(100_000, 100_000))
    (tmp_path / "outside.jpg").write_bytes(jpeg())
    paths = image_paths(root, ["fine.jpg", "bomb.png", "../outside.jpg", "/etc/hostname"])
    assert paths[2:] == [None, None], "names that leave the root are never read"
    embedder = ImageEmbedder(TinyModel(), lambda image: torch.ones(3, 2, 2), "cpu")
    found = embedder.embed_files([p for p in paths if p], "taxonomic", STYLES["retrieval"])
    assert list(found) == [str(root / "fine.jpg")]
    assert embedder.missing == {str(root / "bomb.png")}


def png(size=(8, 8)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (1, 2, 3)).save(out, "PNG")
    return out.getvalue()


def _damaged_images() -> dict[str, bytes]:
    good = jpeg((64, 48))
    sos = good.index(b"\xff\xda")
    bad_length = bytearray(good)
    bad_length[4:6] = b"\xff\xff"  # the first segment claims to run past the end
    bad_crc = bytearray(png())
    bad_crc[30] ^= 0xFF
    return {
        "jpeg cut in the scan": good[: sos + 40],
        "jpeg cut before the scan": good[:sos],
        "jpeg segment longer than the file": bytes(bad_length),
        "jpeg without a frame header": good[:2] + good[sos:],
        "jpeg bomb": jpeg_declaring(65_000, 65_000),
        "png with a bad CRC": bytes(bad_crc),
        "png cut inside its image data": png()[:50],
        "png bomb": png_declaring(100_000, 100_000),
        "neither": b"GIF89a not really",
    }


@pytest.mark.parametrize("name", list(_damaged_images()))
def test_the_structural_check_finds_what_decoding_finds(name):
    from biocap_assets.shards.images import decode_problem, structure_problem

    data = _damaged_images()[name]
    assert structure_problem(data) == "bad_image"
    assert decode_problem(data) == "bad_image", "the reference: Pillow agrees it is bad"


def test_the_structural_check_passes_whole_images(demo_world):
    from biocap_assets.shards.images import structure_problem
    from biocap_assets.shards.rewrite import iter_samples

    assert structure_problem(jpeg((640, 480))) is None
    assert structure_problem(png((33, 17))) is None
    with demo_world.train_shards[0].open("rb") as f:
        images = [s.image for s in iter_samples(f) if s.is_sample and s.image]
    assert images and all(structure_problem(i) is None for i in images)


def test_every_check_mode_gives_the_same_shard_and_counts(demo_world):
    """Modes change how damage is found, never the bytes written for good samples; the
    decoding pool changes nothing but the speed."""
    from biocap_assets.shards.rewrite import iter_samples

    with demo_world.train_shards[0].open("rb") as f:
        samples = [s for _, s in zip(range(40), iter_samples(f), strict=False) if s.is_sample]
    rows = []
    for i, s in enumerate(samples):
        members = {m.suffix: m.data for m in s.members}
        if i == 5:
            members["jpg"] = members["jpg"][: len(members["jpg"]) // 2]  # cut in the scan
        rows.append({"__key__": s.key, **members})
    data = shard(rows)
    outputs = {}
    for mode, workers in (("decode", 1), ("decode", 2), ("structure", 1)):
        out = io.BytesIO()
        stats = rewrite_shard(
            io.BytesIO(data), out, EchoCaptioner(), check_images=mode, image_workers=workers
        )
        assert (stats.samples, stats.bad_image) == (len(rows), 1), (mode, workers)
        outputs[(mode, workers)] = out.getvalue()
    assert len(set(outputs.values())) == 1
