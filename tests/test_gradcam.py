"""Grad-CAM and its localisation scores (cxr14/gradcam.py), on a model whose evidence is known."""

import numpy as np
import pytest

from cxr14 import gradcam, models
from cxr14.constants import FINDINGS


def test_pointing_game_and_iou_on_synthetic_boxes():
    cam = np.zeros((64, 64), np.float32)
    cam[10:20, 30:40] = 1.0
    cam[15, 35] = 2.0
    inside = gradcam.box_to_pixels((30 * 16, 10 * 16, 10 * 16, 10 * 16), 64)  # 1024-px coords
    assert inside == (30, 10, 40, 20)
    assert gradcam.pointing_hit(cam, inside)
    assert not gradcam.pointing_hit(cam, (0, 0, 10, 10))
    assert gradcam.iou(cam / cam.max(), inside, threshold=0.4) == pytest.approx(1.0)
    assert gradcam.iou(cam / cam.max(), (30, 10, 40, 30), threshold=0.4) == pytest.approx(0.5)


def _spot_detector(size=128):
    """A cxr14-shaped model whose Atelectasis evidence is known: the backbone's one feature map is
    the brightness above 100, pooled 8x8, and the head adds it up. Grad-CAM must point at bright spots."""
    import keras

    from cxr14.models import ModelInfo

    inputs = keras.Input((size, size, 1))
    x = ModelInfo({"labels": list(FINDINGS), "image_size": size, "backbone": "spot"}, name="cxr14_info")(inputs)
    b_in = keras.Input((size, size, 1))
    feat = keras.layers.Conv2D(1, 1, activation="relu", name="spot")(keras.layers.AveragePooling2D(8)(b_in))
    features = keras.Model(b_in, feat, name="backbone")(x)
    pooled = keras.layers.Dropout(0.0, name="dropout")(keras.layers.GlobalAveragePooling2D(name="pool")(features))
    head = keras.layers.Dense(14, activation="sigmoid", name="findings")
    model = keras.Model(inputs, head(pooled))
    model.get_layer("backbone").get_layer("spot").set_weights([np.ones((1, 1, 1, 1)), np.array([-100.0])])
    head.set_weights([np.r_[1.0, -np.ones(13)][None, :], np.zeros(14)])
    return model


def test_gradcam_peaks_where_the_planted_signal_is(tmp_path):
    model = _spot_detector()
    model.save(tmp_path / "m.keras")
    model = models.load(tmp_path / "m.keras")  # through save and load, as the app and evaluation use it
    rng = np.random.default_rng(5)
    for x, y in ((8, 8), (88, 16), (16, 80), (80, 88), (56, 48)):
        img = rng.integers(0, 40, (1, 128, 128, 1)).astype(np.float32)
        img[0, y : y + 24, x : x + 24] += 180.0
        cam, probs = gradcam.gradcam(model, img, 0)
        assert cam.shape == (1, 128, 128) and cam.min() >= 0 and cam.max() == pytest.approx(1.0)
        assert probs.shape == (1, 14) and probs[0, 0] > 0.5
        assert gradcam.pointing_hit(cam[0], (x, y, x + 24, y + 24))
        assert gradcam.iou(cam[0], (x, y, x + 24, y + 24)) > 0.3
    # A finding whose evidence is absent gives a flat map, which points nowhere.
    cam, _ = gradcam.gradcam(model, img, 1)
    assert cam.max() == 0 and not gradcam.pointing_hit(cam[0], (0, 0, 128, 128))
