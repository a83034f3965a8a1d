"""Step `score` (cxr14/score.py)."""

import pytest

from conftest import write_easy_shards
from cxr14 import models
from cxr14.steps import score


def test_scoring_names_a_damaged_shard(tmp_path):
    from cxr14.shard_io import CorruptShard

    manifests = write_easy_shards(tmp_path, (("val", 8), ("test", 8)), size=16, per_shard=8)
    models.build("small_cnn", 16, "none", dropout=0.0).save(tmp_path / "m.keras")
    shard = next((tmp_path / "shards/test").glob("*.tfrecord"))
    shard.write_bytes(shard.read_bytes()[:-10])  # cut short
    with pytest.raises(CorruptShard, match=rf"{shard.name}: damaged"):
        score.score(
            model=tmp_path / "m.keras",
            manifests=[manifests["val"], manifests["test"]],
            splits=["val", "test"],
            predictions=tmp_path / "p.parquet",
            features=tmp_path / "f.npz",
            batch_size=8,
            tta=False,
        )
    assert not (tmp_path / "p.parquet").exists()
