"""One way in for every image (cxr14/inference.py): PNG, JPEG and DICOM read into the pixels the
shard stage writes, the same numbers as the shards, and bad files refused with the reason."""

import numpy as np
import pandas as pd
import pytest

from conftest import write_dicom
from cxr14.constants import FINDINGS
from cxr14.data import Shards, dataset
from cxr14.images import BadImage
from cxr14.inference import Predictor, read_gray
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


def test_dicom_windowing_and_monochrome1(tmp_path):
    ramp = np.tile(np.linspace(0, 4000, 64), (64, 1))
    mono2 = read_gray(write_dicom(tmp_path / "a.dcm", ramp).read_bytes())
    mono1 = read_gray(write_dicom(tmp_path / "b.dcm", ramp, monochrome1=True).read_bytes())
    assert mono2.dtype == np.uint8 and mono2[0, 0] == 0 and mono2[0, -1] == 255
    assert np.abs(mono1.astype(int) - (255 - mono2.astype(int))).max() <= 1  # inverted: high values dark
    windowed = read_gray(write_dicom(tmp_path / "c.dcm", ramp, window=(1000, 500)).read_bytes())
    # Outside the window [750, 1250] everything saturates.
    assert windowed[0, 0] == 0 and windowed[0, -1] == 255 and (windowed == 255).mean() > 0.6


def test_bad_files_are_refused_clearly(tmp_path):
    with pytest.raises(BadImage, match="empty file"):
        read_gray(b"")
    with pytest.raises(BadImage, match="not a decodable image"):
        read_gray(b"%PDF-1.4 not an x-ray")
    with pytest.raises(BadImage, match=r"over the 0.001 MB limit"):
        read_gray(b"x" * 5000, max_mb=0.001)
