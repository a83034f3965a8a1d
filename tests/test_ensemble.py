"""Step `ensemble` (cxr14/ensemble.py): the weighted mean of its members' scores."""

import numpy as np
import pandas as pd
import pytest

from conftest import synthetic_predictions
from cxr14.steps.ensemble import ensemble


def test_ensemble_is_the_weighted_mean_and_refuses_other_images(tmp_path):
    a, b = synthetic_predictions(tmp_path / "a.parquet", 1, 0.2), synthetic_predictions(tmp_path / "b.parquet", 2, 0.3)
    ensemble(
        member_predictions={"a": tmp_path / "a.parquet", "b": tmp_path / "b.parquet"},
        predictions=tmp_path / "e.parquet",
        weights={"a": 3.0, "b": 1.0},
    )
    out = pd.read_parquet(tmp_path / "e.parquet").set_index("image_index").loc[a.image_index]
    np.testing.assert_allclose(out["p_Mass"], (3 * a.p_Mass + b.p_Mass) / 4, rtol=1e-6)
    assert (out["y_Mass"].to_numpy() == a.y_Mass.to_numpy()).all()
    synthetic_predictions(tmp_path / "c.parquet", 3, 0.2, images=60)
    with pytest.raises(ValueError, match="ensemble members a and c were scored on different images"):
        ensemble(
            member_predictions={"a": tmp_path / "a.parquet", "c": tmp_path / "c.parquet"},
            predictions=tmp_path / "x.parquet",
            weights=None,
        )
    assert not (tmp_path / "x.parquet").exists()
