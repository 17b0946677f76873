import pytest

from biocap_assets.resources import StorageResource


def test_atomic_write_leaves_nothing_when_interrupted(tmp_path):
    storage = StorageResource(root_url=(tmp_path / "root").as_uri())
    storage.write_bytes("reports", "a.json", data=b"old")
    with pytest.raises(RuntimeError), storage.open_atomic("reports", "a.json") as f:
        f.write(b"half of the new")
        raise RuntimeError("killed")
    assert storage.path("reports", "a.json").read_bytes() == b"old"
    assert [p.name for p in storage.path("reports").iterdir()] == ["a.json"]


def test_paths_are_under_the_root(tmp_path):
    storage = StorageResource(root_url=(tmp_path / "root").as_uri())
    assert storage.is_local
    path = storage.write_bytes("a", "b", "c.bin", data=b"x")
    assert path.read_bytes() == b"x"
    assert (tmp_path / "root" / "a" / "b" / "c.bin").is_file()
    assert StorageResource(root_url="s3://bucket/prefix").protocol == "s3"
