import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import NIH_SAMPLE
from cxr14 import images, paths, shard_io
from cxr14.constants import FINDINGS
from cxr14.data import Shards, dataset
from cxr14.settings import AugmentSettings, defaults


def _table(n=10, split="train"):
    rows = []
    for k in range(n):
        labels = {f: int((k + j) % 3 == 0) for j, f in enumerate(FINDINGS)}
        rows.append(
            {
                "image_index": f"{k + 1:08d}_000.png",
                "patient_id": k + 1,
                "follow_up": 0,
                "age_years": float(20 + k) if k != 3 else np.nan,
                "sex": "MF"[k % 2],
                "view": ("PA", "AP")[k % 2],
                "archive": 1,
                "split": split,
                **labels,
            }
        )
    return pd.DataFrame(rows)


def _located(rows, tmp_path):
    """Plan rows with the `file` each image is read from (the tables' images are in archive 1's folder)."""
    return rows.assign(file=[str(tmp_path / "img" / "images_01" / name) for name in rows.image_index])


def _write_pngs(root, table, size=100, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / "images_01"
    folder.mkdir(parents=True, exist_ok=True)
    pixels = {}
    for name in table.image_index:
        img = rng.integers(0, 256, (size, size), dtype=np.uint8)
        cv2.imwrite(str(folder / name), img)
        pixels[name] = img
    return pixels


def _manifest(tmp_path, infos, split="train", size=32, encoding="raw"):
    shard_io.write_manifest(split, infos, size, encoding, tmp_path / "manifest.json", tmp_path / "bad.tsv", 10)
    return Shards.from_manifest(tmp_path / "manifest.json")


@pytest.mark.parametrize("encoding", ["raw", "png"])
def test_round_trip_keeps_pixels_labels_and_metadata(tmp_path, encoding):
    table = _table()
    pixels = _write_pngs(tmp_path / "img", table)
    plan = shard_io.plan_table(table, images_per_shard=4, seed=0)
    infos = [
        shard_io.write_shard(
            _located(plan[plan.shard == s], tmp_path),
            tmp_path / f"{paths.shard_stem('train', s, 3)}.tfrecord",
            32,
            encoding,
            0,
        )
        for s in range(3)
    ]
    assert [i["images"] for i in infos] == [4, 3, 3]
    ds = dataset(_manifest(tmp_path, infos, encoding=encoding), 4, with_metadata=True)
    seen = 0
    for x, y, meta in ds:
        for k in range(x.shape[0]):
            name = meta["image_index"][k].numpy().decode()
            row = table.set_index("image_index").loc[name]
            ref = cv2.resize(pixels[name], (32, 32), interpolation=cv2.INTER_AREA)
            np.testing.assert_array_equal(x[k, :, :, 0].numpy().astype(np.uint8), ref)
            np.testing.assert_array_equal(y[k].numpy(), row[list(FINDINGS)].to_numpy(float))
            assert meta["patient_id"][k] == row.patient_id and meta["sex"][k].numpy().decode() == row.sex
            assert meta["view"][k].numpy().decode() == row.view
            age = float(meta["age_years"][k])
            assert (np.isnan(age) and np.isnan(row.age_years)) or age == pytest.approx(row.age_years)
            seen += 1
    assert seen == 10
    # Evaluation reads in the same order every time.
    order = [m.decode() for _, _, meta in ds for m in meta["image_index"].numpy()]
    assert order == [m.decode() for _, _, meta in ds for m in meta["image_index"].numpy()]
    assert sorted(order) == sorted(table.image_index)


def test_shards_are_byte_identical_and_the_plan_is_seeded(tmp_path):
    table = _table(12)
    _write_pngs(tmp_path / "img", table)
    a = shard_io.plan_table(table, 5, seed=1)
    assert a.equals(shard_io.plan_table(table, 5, seed=1)) and not a.equals(shard_io.plan_table(table, 5, seed=2))
    shard_io.write_shard(_located(a[a.shard == 0], tmp_path), tmp_path / "a.tfrecord", 16, "raw", 0)
    shard_io.write_shard(_located(a[a.shard == 0], tmp_path), tmp_path / "b.tfrecord", 16, "raw", 0)
    assert (tmp_path / "a.tfrecord").read_bytes() == (tmp_path / "b.tfrecord").read_bytes()
    assert shard_io.shard_counts(a) == {"train": 3, "val": 0, "test": 0}


def test_bad_images_are_skipped_listed_and_capped(tmp_path):
    table = _table(4)
    _write_pngs(tmp_path / "img", table)
    path = tmp_path / "img/images_01" / table.image_index[1]
    path.write_bytes(path.read_bytes()[:200])  # truncated
    (tmp_path / "img/images_01" / table.image_index[2]).unlink()  # missing
    plan = shard_io.plan_table(table, 10, 0)
    info = shard_io.write_shard(_located(plan, tmp_path), tmp_path / "s.tfrecord", 16, "raw", max_bad_images=2)
    assert info["images"] == 2
    assert {b["image_index"] for b in info["bad_images"]} == set(table.image_index[1:3])
    assert any("truncated" in b["reason"] for b in info["bad_images"])
    with pytest.raises(shard_io.TooManyBadImages, match="2 bad images"):
        shard_io.write_shard(_located(plan, tmp_path), tmp_path / "t.tfrecord", 16, "raw", max_bad_images=1)
    assert not (tmp_path / "t.tfrecord").exists() and not (tmp_path / "t.partial.tfrecord").exists()
    shard_io.write_manifest("train", [info], 16, "raw", tmp_path / "m.json", tmp_path / "bad.tsv", 5)
    assert len(pd.read_csv(tmp_path / "bad.tsv", sep="\t")) == 2


@pytest.mark.parametrize("kind", ["gray8", "rgb", "rgba", "gray16", "nonsquare", "jpeg"])
def test_odd_images_decode_to_one_8bit_channel(kind):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (40, 40), dtype=np.uint8)
    ext = ".png"
    if kind == "rgb":
        img = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    elif kind == "rgba":
        img = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGRA)
    elif kind == "gray16":
        img = gray.astype(np.uint16) * 16 + 100  # a 12-bit image in a 16-bit PNG
    elif kind == "nonsquare":
        img = gray[:, :30]
    elif kind == "jpeg":
        img, ext = gray, ".jpg"
    else:
        img = gray
    out = images.resize(images.decode(cv2.imencode(ext, img)[1].tobytes()), 20)
    assert out.shape == (20, 20) and out.dtype == np.uint8
    if kind in ("gray8", "rgb", "rgba", "gray16"):
        # Colour and 16-bit versions of the same picture give the same pixels (16-bit up to rounding).
        ref = cv2.resize(gray, (20, 20), interpolation=cv2.INTER_AREA)
        assert np.abs(out.astype(int) - ref).max() <= 1


def test_undecodable_bytes_raise_bad_image():
    truncated = b"\x89PNG\r\n\x1a\n" + cv2.imencode(".png", np.zeros((9, 9), np.uint8))[1].tobytes()[8:40]
    for data, reason in ((b"", "empty"), (b"not an image", "not a PNG, JPEG or DICOM"), (truncated, "not a decodable")):
        with pytest.raises(images.BadImage, match=reason):
            images.decode(data)


@pytest.mark.skipif(not NIH_SAMPLE.is_dir(), reason="../shared/nih-sample is not present")
def test_real_nih_pngs_decode():
    for path in sorted(NIH_SAMPLE.glob("*.png")):
        img = images.load(path, 224, images.DEFAULT_MAX_MEGAPIXELS)
        assert img.shape == (224, 224) and img.dtype == np.uint8 and img.std() > 10


def test_training_reader_shapes_range_and_channels(tmp_path):
    table = _table(10)
    _write_pngs(tmp_path / "img", table)
    plan = shard_io.plan_table(table, 5, 0)
    infos = [
        shard_io.write_shard(_located(plan[plan.shard == s], tmp_path), tmp_path / f"s{s}.tfrecord", 32, "raw", 0)
        for s in range(2)
    ]
    src = _manifest(tmp_path, infos)
    batches = list(
        dataset(
            src, 4, training=True, augment=AugmentSettings.of(defaults("train")["augment"]), channels=3, scale="unit"
        )
    )
    assert len(batches) == 2  # training drops the last partial batch
    x, y = batches[0]
    assert x.shape == (4, 32, 32, 3) and x.dtype.name == "float32" and y.shape == (4, 14)
    assert 0.0 <= float(np.min(x)) and float(np.max(x)) <= 1.0
    np.testing.assert_array_equal(x[..., 0], x[..., 2])
