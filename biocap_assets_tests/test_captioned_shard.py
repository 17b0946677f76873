"""Rewriting a shard: members unchanged, captions added, bad samples kept, atomic output."""

import io
import json
import signal
import subprocess
import sys
import tarfile
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from biocap_assets.inference.tasks import TemplateCaptionerAdapter
from biocap_assets.shards.rewrite import iter_samples, rewrite_shard
from biocap_assets.shards.tarwrite import DeterministicTarWriter
from biocap_assets_tests.chat_server import ChatServer, completion


@pytest.fixture(scope="module")
def input_shard(demo_world, tmp_path_factory):
    """12 demo samples, one with an undecodable image, one without image, one pre-captioned."""
    with demo_world.train_shards[0].open("rb") as f:
        samples = [s for _, s in zip(range(12), iter_samples(f), strict=False)]
    path = tmp_path_factory.mktemp("shard") / "shard-000042.tar"
    with path.open("wb") as out, DeterministicTarWriter(out) as writer:
        for i, sample in enumerate(samples):
            members = {m.suffix: m.data for m in sample.members}
            if i == 3:
                members["jpg"] = b"\xff\xd8\xff\xe0 truncated garbage"
            if i == 5:
                members.pop("jpg")
            if i == 7:
                members["caption.txt"] = b"an old caption"
            writer.write({"__key__": sample.key, **members})
    return path


def members(data: bytes) -> dict[str, tuple[bytes, int, int]]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: (tar.extractfile(m).read(), m.mtime, m.mode) for m in tar.getmembers()}


def rewrite(path, captioner=None, batch_size=4) -> tuple[bytes, object]:
    out = io.BytesIO()
    with path.open("rb") as src:
        stats = rewrite_shard(
            src,
            out,
            captioner or TemplateCaptionerAdapter(),
            describe=lambda ranks: f"It is crimson with {ranks['species']} spots.",
            batch_size=batch_size,
        )
    return out.getvalue(), stats


def test_members_unchanged_and_captions_added(input_shard):
    before = members(input_shard.read_bytes())
    data, stats = rewrite(input_shard)
    after = members(data)
    old_caption = [n for n in before if n.endswith(".caption.txt")]
    for name, value in before.items():
        if name not in old_caption:
            assert after[name] == value, f"{name} changed"
    added = {n for n in after if n.endswith(".caption.txt")}
    assert len(added) == 10 and set(old_caption) <= added
    assert all(after[n][0] != b"an old caption" for n in old_caption), "replaced, not kept"
    assert (stats.samples, stats.captioned, stats.bad_image, stats.no_image) == (12, 10, 1, 1)
    caption = after[sorted(added)[0]][0].decode()
    assert ": crimson with" in caption and len(caption.split()) <= 20


def test_rerun_gives_identical_bytes_whatever_the_batch(input_shard):
    first, _ = rewrite(input_shard, batch_size=4)
    second, _ = rewrite(input_shard, batch_size=5)
    assert first == second


def test_samples_come_back_in_order_and_memory_stays_per_batch(input_shard):
    data, stats = rewrite(input_shard, batch_size=1)
    keys_in = [s.key for s in iter_samples(input_shard.open("rb"))]
    keys_out = [s.key for s in iter_samples(io.BytesIO(data))]
    assert keys_in == keys_out and stats.samples == 12


@pytest.mark.slow
def test_a_killed_caption_worker_leaves_no_complete_looking_shard(input_shard, tmp_path):
    output = tmp_path / "captioned" / "shard-000042.tar"

    def slow(payload, attempt):
        return 200, completion("A slow caption."), 0.4

    with ChatServer(slow) as server:
        inference = {"model": "test-vlm", "base_url": server.base_url, "concurrency": 1}
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "biocap_assets.workers.caption",
                "--input",
                str(input_shard),
                "--output",
                str(output),
                "--source",
                "openai",
                "--batch-size",
                "2",
                "--inference",
                json.dumps(inference),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while len(server.requests) < 3:
            assert time.monotonic() < deadline and worker.poll() is None
            time.sleep(0.05)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    assert not output.exists(), "a killed run must not leave the final shard"
    leftovers = list(output.parent.glob("*.tmp-*")) if output.parent.exists() else []
    assert leftovers and all(".tmp-" in p.name for p in leftovers), "killed mid-write"

    # the retry removes what the killed run left, and leaves only the finished shard
    done = _run_worker(["--input", str(input_shard), "--output", str(output)])
    assert done.returncode == 0, done.stderr[-2000:]
    assert [p.name for p in output.parent.iterdir()] == [output.name]
    assert "left by an earlier attempt that was killed" in done.stderr + done.stdout


def test_released_captions_are_joined_by_key_and_never_invented(input_shard, tmp_path):
    keys = [s.key for s in iter_samples(input_shard.open("rb"))]
    released = tmp_path / "uuid_caption_description.parquet"
    pq.write_table(
        pa.table(
            {
                "uuid": keys[:8] + ["not-in-this-shard"],
                "caption": [f"released caption {k}" for k in keys[:8]] + ["x"],
                "description": ["d"] * 9,
            }
        ),
        released,
    )
    output = tmp_path / "out.tar"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "biocap_assets.workers.caption",
            "--input",
            str(input_shard),
            "--output",
            str(output),
            "--source",
            "released",
            "--released-url",
            str(released),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout[done.stdout.index("{") :])
    after = members(output.read_bytes())
    captions = {
        n.split(".")[0]: v[0].decode() for n, v in after.items() if n.endswith(".caption.txt")
    }
    decodable = [k for i, k in enumerate(keys) if i not in (3, 5)]
    assert set(captions) == {k for k in keys[:8] if k in decodable}
    assert all(captions[k] == f"released caption {k}" for k in captions)
    assert report["backend"] == "released" and report["failed"] == len(decodable) - len(captions)
    assert report["errors"][0].endswith("no released caption for this key")


def _run_worker(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "biocap_assets.workers.caption", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_caption_worker_records_prompt_parameters_and_digest(input_shard, tmp_path, demo_world):
    """Through the OpenAI-compatible backend against a server on 127.0.0.1: what it was
    sent is BioCAP's prompt, and shard_stats' row says so (hash, sampling, digest)."""
    import hashlib

    from biocap_assets.inference import prompts

    def answer(payload, attempt):
        return 200, completion("A crimson bird with a black mask."), 0.0

    output = tmp_path / "out.tar"
    with ChatServer(answer) as server:
        inference = {
            "model": "OpenGVLab/InternVL3-38B-AWQ",
            "base_url": server.base_url,
            "seed": 7,
            "temperature": 0.6,
            "top_p": 0.8,
            "max_tokens": 50,
        }
        done = _run_worker(
            [
                "--input", str(input_shard), "--output", str(output), "--source", "openai",
                "--format-examples", str(demo_world.format_examples),
                "--inference", json.dumps(inference),
            ]
        )  # fmt: skip
        sent = server.requests
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout[done.stdout.index("{") :])
    assert report["prompt"] == "biocap-reference"
    assert report["prompt_sha256"] == prompts.caption_prompt_sha256("biocap-reference")
    generation = json.loads(report["generation"])
    assert generation["temperature"] == 0.6 and generation["seed"] == 7
    assert generation["stop"] == ["<|im_end|>", "</s>", "<|endoftext|>"]
    assert generation["max_wiki_chars"] == 600
    assert (generation["quantization"], generation["max_model_len"]) == ("awq", 2048)
    # ... and that is what the server was sent
    assert {r["temperature"] for r in sent} == {0.6} and {r["top_p"] for r in sent} == {0.8}
    assert {r["max_tokens"] for r in sent} == {50}
    assert len({r["seed"] for r in sent}) == len(sent), "a seed per sample, from the base seed"
    assert report["sha256"] == hashlib.sha256(output.read_bytes()).hexdigest()
    assert report["examples_class"] + report["examples_fallback"] == len(sent) == 10
    assert report["examples_class"] > 0, "the demo's classes have examples"
    text = sent[0]["messages"][0]["content"][-1]["text"]
    assert text.startswith("You are a biologist describing organisms")
    assert sent[0]["chat_template"] and sent[0]["stop"] == generation["stop"]


def _shard_bytes(input_shard) -> bytes:
    return input_shard.read_bytes()


@pytest.mark.parametrize(
    "damage,message",
    [
        ("gzip", "is gzip-compressed; shards must be plain"),
        ("truncated", "unexpected end of file"),
        ("bad_header", "bad header checksum"),
        ("bad_size", "size field"),
        ("missing", "no such file"),
    ],
)
def test_a_bad_shard_fails_naming_the_shard_and_what_is_wrong(
    input_shard, tmp_path, damage, message
):
    import gzip

    data = _shard_bytes(input_shard)
    bad = tmp_path / "shard-000099.tar"
    if damage == "gzip":
        bad.write_bytes(gzip.compress(data))
    elif damage == "truncated":
        bad.write_bytes(data[: len(data) // 2 + 100])
    elif damage == "bad_header":
        bad.write_bytes(data[:148] + b"0000000\0" + data[156:])
    elif damage == "bad_size":
        header = bytearray(data[:512])
        header[124:136] = b"12x4567\x00\x00\x00\x00\x00"
        header[148:156] = b" " * 8
        checksum = sum(header)
        header[148:156] = f"{checksum:06o}\x00 ".encode()
        bad.write_bytes(bytes(header) + data[512:])
    done = _run_worker(["--input", str(bad), "--output", str(tmp_path / "out.tar")])
    assert done.returncode != 0
    assert str(bad) in done.stderr and message in done.stderr, done.stderr[-1500:]
    assert not (tmp_path / "out.tar").exists(), "nothing that looks complete"


@pytest.mark.parametrize("record", [b"0 path=x\n", b"-5 path=x\n", b"3 x\n", b"99999 path=x\n"])
def test_a_malformed_pax_record_fails_instead_of_spinning(record):
    from biocap_assets.shards.tarstream import TarFormatError, iter_raw_members

    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type, pax.size = tarfile.XHDTYPE, len(record)
    body = record + b"\0" * (-len(record) % 512)
    data = pax.tobuf(tarfile.USTAR_FORMAT) + body + b"\0" * 1024
    with pytest.raises(TarFormatError, match="PAX"):
        list(iter_raw_members(io.BytesIO(data)))


def test_a_hemihomonym_never_gets_the_other_taxons_description(reference_data):
    """Abronia umbellata is a plant (pink sand verbena) and a lizard: with only the plant
    described, the lizard's sample finds nothing; an unambiguous binomial still falls
    back when its ranks differ in case or spelling."""
    import csv

    from biocap_assets.shards.rewrite import description_lookup

    rows = [
        r
        for r in csv.DictReader(
            (reference_data / "biocap/data/wiki_species/species_binomial_ambiguous.csv").open()
        )
        if r["binomial"] == "Abronia umbellata"
    ]
    plant = next(r for r in rows if r["kingdom"] == "Plantae")
    lizard = next(r for r in rows if r["kingdom"] == "Animalia")
    text = "Pink sand verbena has pink to purple flowers in rounded clusters."
    table = [
        {**plant, "description": text},
        {**lizard, "description": ""},
        {"kingdom": "Plantae", "phylum": "Tracheophyta", "class": "Magnoliopsida",
         "order": "Rosales", "family": "Rosaceae", "genus": "Rosa", "species": "canina",
         "description": "Pink five-petalled flowers."},
    ]  # fmt: skip
    lookup = description_lookup(table)
    assert lookup(plant) == text
    assert lookup({**plant, "kingdom": "PLANTAE"}) == text, "ranks match case-insensitively"
    assert lookup(lizard) is None, "the lizard must not get the plant's text"
    assert lookup({**lizard, "family": "Anguidae "}) is None
    # A taxon seen under slightly other ranks: its unambiguous binomial still finds it.
    assert lookup({"genus": "Rosa", "species": "canina", "kingdom": "Plantae", "order": "x"}) == (
        "Pink five-petalled flowers."
    )


def test_demo_captions_show_no_leak_and_no_broken_text(demo_world, tmp_path):
    """The demo's hemihomonyms (real ones from species_binomial_ambiguous.csv), its
    family- and order-only samples and its nameless sample, captioned by the CPU captioner."""
    from biocap_assets.demo.species import SPECIES
    from biocap_assets.demo.wiki import visual_paragraphs
    from biocap_assets.taxonomy.names import RANKS

    described = [s for s in SPECIES if s.wiki != "none"]  # only one twin of each pair
    table = [
        {
            **dict(zip(RANKS, s.taxon.ranks, strict=True)),
            "description": " ".join(visual_paragraphs(s)),
        }
        for s in described
    ] + [
        {**dict(zip(RANKS, s.taxon.ranks, strict=True)), "description": ""}
        for s in SPECIES
        if s.wiki == "none"
    ]
    from biocap_assets.shards.rewrite import description_lookup

    lookup = description_lookup(table)
    captions: dict[str, str] = {}
    stats_total = {"no_taxon": 0}
    for shard in demo_world.train_shards:
        out = tmp_path / shard.name
        with shard.open("rb") as src, out.open("wb") as dst:
            stats = rewrite_shard(src, dst, TemplateCaptionerAdapter(), describe=lookup)
        stats_total["no_taxon"] += stats.no_taxon
        with tarfile.open(out) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".caption.txt"):
                    captions[member.name] = tar.extractfile(member).read().decode()
    assert stats_total["no_taxon"] == 1, "the nameless sample gets no caption"
    twins = {s.taxon.common: s for s in SPECIES if s.wiki == "none"}
    for caption in captions.values():
        assert " ," not in caption and ", ." not in caption and "A photo of ." not in caption
        assert not caption.endswith(" .")
    # Only the foxglove (a plant) of the Digitalis purpurea pair has a description.
    assert "purple leafhopper" in twins
    leafhopper = [c for c in captions.values() if "urple leafhopper" in c]
    foxglove = [c for c in captions.values() if c.lower().startswith("foxglove")]
    assert leafhopper and foxglove
    assert any(":" in c for c in foxglove), "the plant's captions carry its traits"
    assert all(c == "A photo of purple leafhopper, Digitalis purpurea." for c in leafhopper)
    partial = [c for c in captions.values() if "a member of the" in c]
    assert any("family Calliphoridae (order Diptera)" in c for c in partial)
    assert any("order Coleoptera (class Insecta)" in c for c in partial)


def test_a_shard_cut_between_two_members_is_truncated_not_short(input_shard):
    """A cut on a 512-byte boundary between members leaves only whole members: without
    the end-of-archive marker it is still a truncated shard, not a shorter one."""
    from biocap_assets.shards.tarstream import TarFormatError, iter_raw_members

    data = input_shard.read_bytes()
    members = list(iter_raw_members(io.BytesIO(data)))
    cut = sum(len(m.raw) for m in members[:5])
    assert cut % 512 == 0
    with pytest.raises(TarFormatError, match="without its end-of-archive marker"):
        list(iter_raw_members(io.BytesIO(data[:cut])))
    assert len(list(iter_raw_members(io.BytesIO(data)))) == len(members), "whole: fine"


def test_folders_and_global_headers_are_copied_through(input_shard):
    """Members that are not files (a folder, a global PAX header) form no sample, as in
    webdataset, and still come out where they were: every member is copied."""
    from biocap_assets.shards.tarstream import END_OF_ARCHIVE, iter_raw_members

    def member(name: str, kind: bytes, data: bytes = b"") -> bytes:
        info = tarfile.TarInfo(name)
        info.type, info.size = kind, len(data)
        return info.tobuf(tarfile.USTAR_FORMAT) + data + b"\0" * (-len(data) % 512)

    records = b"35 comment=written by a shard tool\n"
    head = member("images", tarfile.DIRTYPE) + member("pax_global_header", tarfile.XGLTYPE, records)
    tail = member("empty-folder", tarfile.DIRTYPE)
    body = b"".join(m.raw for m in iter_raw_members(io.BytesIO(input_shard.read_bytes())))
    out = io.BytesIO()
    stats = rewrite_shard(
        io.BytesIO(head + body + tail + END_OF_ARCHIVE), out, TemplateCaptionerAdapter()
    )
    assert stats.samples == 12
    written = out.getvalue()
    assert written.startswith(head), "the folder and the global header first, unchanged"
    assert tail + END_OF_ARCHIVE in written[-len(tail) - 2048 :]
    with tarfile.open(fileobj=io.BytesIO(written)) as tar:
        names = tar.getnames()
    assert names[0] == "images" and names[-1] == "empty-folder"
