import io
import tarfile

import pytest

from biocap_assets.shards.naming import expand_shard_urls, partition_key, shard_partitions
from biocap_assets.shards.tarwrite import DeterministicTarWriter
from biocap_assets.shards.texts import Taxon, sample_texts

RAVEN = Taxon(
    "Animalia", "Chordata", "Aves", "Passeriformes", "Corvidae", "Corvus", "corax", "common raven"
)


def test_brace_pattern_gives_six_digit_partition_keys():
    urls = expand_shard_urls("/data/tol/shard-{000000..000159}.tar")
    assert len(urls) == 160
    mapping = shard_partitions("s3://bucket/shards/shard-{000098..000101}.tar")
    assert list(mapping) == ["000098", "000099", "000100", "000101"]
    assert mapping["000100"] == "s3://bucket/shards/shard-000100.tar"


def test_bad_shard_names_are_refused_with_the_name():
    with pytest.raises(ValueError, match="notashard.zip"):
        partition_key("/data/notashard.zip")
    with pytest.raises(ValueError, match="share partition key 000001"):
        shard_partitions("/a/shard-000001.tar::/b/shard-000001.tar")


def test_texts_follow_upstream_templates():
    texts = sample_texts(RAVEN)
    assert texts["sci.txt"] == "a photo of Corvus corax."
    assert (
        texts["taxonomic_name.txt"] == "Animalia Chordata Aves Passeriformes Corvidae Corvus corax"
    )
    assert texts["taxonTag.txt"] == (
        "a photo of kingdom Animalia phylum Chordata class Aves order Passeriformes "
        "family Corvidae genus Corvus species corax."
    )
    assert texts["taxonTag_com.txt"].endswith("species corax with common name common raven.")
    assert texts["sci_com.txt"] == "a photo of Corvus corax with common name common raven."


def test_texts_skip_missing_ranks():
    genus_only = Taxon("Animalia", "Arthropoda", "Insecta", "Hymenoptera", "Apidae", "Apis", "")
    texts = sample_texts(genus_only)
    assert texts["scientific_name.txt"] == "Apis"
    assert "species" not in texts["taxonTag.txt"]
    assert texts["taxon.txt"] == "a photo of Animalia Arthropoda Insecta Hymenoptera Apidae Apis."


def _write(samples):
    buffer = io.BytesIO()
    with DeterministicTarWriter(buffer) as writer:
        for sample in samples:
            writer.write(sample)
    return buffer.getvalue()


def test_tar_writer_is_byte_deterministic_and_orders_members_as_webdataset():
    samples = [
        {"__key__": "a1", "sci.txt": "a photo of X.", "jpg": b"\xff\xd8img"},
        {"__key__": "b2", "jpg": b"\xff\xd8img2", "sci.txt": "a photo of Y."},
    ]
    first, second = _write(samples), _write(samples)
    assert first == second
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        members = tar.getmembers()
        # samples in order, each sample's members by suffix (webdataset's TarWriter)
        assert [m.name for m in members] == ["a1.jpg", "a1.sci.txt", "b2.jpg", "b2.sci.txt"]
        assert all(m.mtime == 0 for m in members)
        assert tar.extractfile("b2.jpg").read() == b"\xff\xd8img2"


@pytest.mark.parametrize("key", ["", "a.b", "x/y"])
def test_tar_writer_rejects_keys_webdataset_would_split(key):
    with pytest.raises(ValueError, match="sample key"):
        _write([{"__key__": key, "jpg": b"x"}])


def test_texts_of_a_family_only_taxon_are_make_txts():
    """BIOSCAN insects known only to family: make_txt's scientific name is empty and the
    common name falls back to the taxonomic one."""
    fly = Taxon("Animalia", "Arthropoda", "Insecta", "Diptera", "Cecidomyiidae", "", "")
    texts = sample_texts(fly)
    assert texts["scientific_name.txt"] == ""
    assert texts["taxonomic_name.txt"] == "Animalia Arthropoda Insecta Diptera Cecidomyiidae"
    assert texts["common_name.txt"] == texts["taxonomic_name.txt"]
    assert texts["taxonTag.txt"] == (
        "a photo of kingdom Animalia phylum Arthropoda class Insecta order Diptera "
        "family Cecidomyiidae."
    )
    lower = Taxon("animalia", "chordata", "aves", "passeriformes", "corvidae", "corvus", "Corax")
    assert sample_texts(lower)["taxonomic_name.txt"] == RAVEN_TAXONOMIC, "capitalised as upstream"


RAVEN_TAXONOMIC = "Animalia Chordata Aves Passeriformes Corvidae Corvus corax"
