"""One way in for every image (cxr14/inference.py): PNG, JPEG and DICOM read into the pixels the
shard stage writes, the same numbers as the shards, and bad files refused with the reason."""

import numpy as np
import pandas as pd
import pytest

from conftest import NIH_SAMPLE, needs_shared
from cxr14.constants import FINDINGS
from cxr14.data import Shards, dataset
from cxr14.images import BadImage, read_gray, write_dicom
from cxr14.inference import Predictor
from cxr14.predict import predict_files


def test_app_predict_and_shards_see_the_same_pixels_and_numbers(served):
    root, manifests = served
    predictor = Predictor(root / "model.keras")
    table = pd.read_parquet(root / "table.parquet")
    x, _, meta = next(iter(dataset(Shards.from_manifest(manifests["test"]), 12, with_metadata=True)))
    for k, name in enumerate(m.decode() for m in meta["image_index"].numpy()):
        path = root / "images/images_01" / name
        prepared = predictor.prepare(read_gray(path.read_bytes()))
        np.testing.assert_array_equal(prepared, x[k].numpy())
    # The batch predictor's numbers are the model's numbers on the shard pixels.
    files = [root / "images/images_01" / n for n in table.image_index]
    predict_files(predictor, files, root / "pred.csv", batch_size=16, progress=False)
    out = pd.read_csv(root / "pred.csv").set_index("image")
    ref = predictor.predict(x.numpy())
    for k, name in enumerate(m.decode() for m in meta["image_index"].numpy()):
        np.testing.assert_allclose(out.loc[name, [f"p_{f}" for f in FINDINGS]].to_numpy(float), ref[k], atol=1e-5)


def test_dicom_is_read_by_its_stored_range_and_window(tmp_path):
    """Without a window a DICOM is mapped from its stored range (12 bits: 0-4095), never stretched to
    its own minimum and maximum; MONOCHROME1 is inverted; a window maps its centre and width as
    DICOM's LINEAR function does; a rescale is applied before either."""
    ramp = np.tile(np.linspace(0, 4000, 64).round(), (64, 1))
    by_range = np.rint(ramp * 255 / 4095).astype(np.uint8)
    mono2 = read_gray(write_dicom(tmp_path / "a.dcm", ramp).read_bytes())
    assert mono2.dtype == np.uint8 and np.array_equal(mono2, by_range) and mono2.max() == 249
    mono1 = read_gray(write_dicom(tmp_path / "b.dcm", 4095 - ramp, monochrome1=True).read_bytes())
    assert np.array_equal(mono1, by_range)  # the same image, stored the other way up
    windowed = read_gray(write_dicom(tmp_path / "c.dcm", ramp, window=(1000, 500)).read_bytes())
    linear = np.clip(((ramp - 999.5) / 499 + 0.5), 0, 1) * 255  # PS3.3 C.11.2.1.2.1, onto 0-255
    assert np.abs(windowed.astype(float) - linear).max() <= 0.5 + 1e-9
    assert windowed[0, 0] == 0 and windowed[0, -1] == 255 and (windowed == 255).mean() > 0.6
    shifted = read_gray(write_dicom(tmp_path / "d.dcm", ramp, rescale=(1.0, -1024.0)).read_bytes())
    assert np.array_equal(shifted, by_range)  # the intercept moves the values and their range alike


@needs_shared
def test_real_nih_pixels_give_the_same_scores_as_png_and_as_dicom(served, tmp_path):
    """Real NIH test PNGs saved as DICOM with the same pixels (8 bits stored, no window; and as
    MONOCHROME1 with the values inverted): the same 8-bit image, and the same scores."""
    root, _ = served
    predictor = Predictor(root / "model.keras")
    for png in sorted(NIH_SAMPLE.glob("*.png")):
        from_png = read_gray(png.read_bytes())
        assert from_png.shape == (1024, 1024)
        copies = {
            "MONOCHROME2": write_dicom(tmp_path / f"{png.stem}.dcm", from_png, bits_stored=8),
            "MONOCHROME1": write_dicom(tmp_path / f"{png.stem}.m1.dcm", 255 - from_png, True, bits_stored=8),
        }
        expected = predictor.predict(predictor.prepare(from_png)[None])
        for kind, path in copies.items():
            from_dicom = read_gray(path.read_bytes())
            assert np.array_equal(from_dicom, from_png), (png.name, kind)
            got = predictor.predict(predictor.prepare(from_dicom)[None])
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_bad_files_are_refused_clearly(tmp_path):
    with pytest.raises(BadImage, match="empty file"):
        read_gray(b"")
    with pytest.raises(BadImage, match="not a PNG, JPEG or DICOM file"):
        read_gray(b"%PDF-1.4 not an x-ray")
    with pytest.raises(BadImage, match=r"over the 0.001 MB limit"):
        read_gray(b"x" * 5000, max_mb=0.001)


def test_a_dicom_written_twice_is_the_same_file(tmp_path):
    """The demo's DICOMs are a function of their name, pixels and tags (no random UID), so the same demo
    makes the same files and the same ingest report; another name gets another UID."""
    import hashlib

    import numpy as np

    from cxr14.images import write_dicom

    pixels = (np.arange(32 * 32).reshape(32, 32) * 3) % 4096
    (tmp_path / "again").mkdir()
    paths = [tmp_path / "a.dcm", tmp_path / "again" / "a.dcm", tmp_path / "b.dcm"]
    digests = [hashlib.sha256(write_dicom(p, pixels, PatientID="p1").read_bytes()).hexdigest() for p in paths]
    assert digests[0] == digests[1] != digests[2]
