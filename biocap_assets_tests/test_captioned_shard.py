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
    assert all(".tmp-" in p.name for p in leftovers)


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
