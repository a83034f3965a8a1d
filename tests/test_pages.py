"""What a page says its numbers rest on (#39 item 7): images a judgement left out, phantom data."""

import pandas as pd

from cxr14 import assess
from cxr14.constants import FINDINGS
from cxr14.report import templates


def _judged_nih_test(tmp_path):
    """A judge of one run on a synthetic NIH test split (given the judgement's optional parts), and its rows."""
    from conftest import fixed_points, synthetic_predictions

    nih = synthetic_predictions(tmp_path / "nih.parquet", seed=1, noise=0.2, images=120)
    test = nih[nih.split == "test"].reset_index(drop=True)

    def judge(**more) -> dict:
        return assess.judge(
            test, run="cnn", dataset="nih", collection={}, split="official test split", findings=list(FINDINGS),
            calibration=None, thresholds=fixed_points(0.4), n_boot=20, seed=0, **more,
        )[0]  # fmt: skip

    return judge, test


def test_images_without_a_score_are_counted_and_named_in_the_result_and_on_the_page(tmp_path):
    """A test image the shard step could not decode has no score: the judgement counts and names it
    (the NIH report said 467 images where its data table said 468, without a word)."""
    judge, test = _judged_nih_test(tmp_path)
    expected = pd.concat([test.image_index, pd.Series(["99999999_000.png"])])  # the table's test images
    result = judge(expected=expected)
    assert result["left_out"] == {"expected": len(test) + 1, "images": 1, "named": ["99999999_000.png"]}
    page = templates().get_template("left_out.html.j2").render(m=result)
    assert "1 of the" in page and "99999999_000.png" in page
    whole = judge(expected=test.image_index)
    assert whole["left_out"]["images"] == 0
    assert templates().get_template("left_out.html.j2").render(m=whole).strip() == ""


def test_a_judgement_of_phantom_data_says_so_and_draws_no_published_figures(tmp_path):
    """Every page made from the demo's phantom data says so at the top, and the NIH report does not
    chart its phantom AUROC beside CheXNet's."""
    judge, _ = _judged_nih_test(tmp_path)
    real, phantom = judge(), judge(synthetic=True)
    assert "published" in real and not real["synthetic"]
    assert "published" not in phantom and phantom["synthetic"]
    notice = templates().get_template("notices.html.j2")
    assert 'id="synthetic"' in notice.render(disclaimer="d", synthetic=True)
    assert 'id="synthetic"' not in notice.render(disclaimer="d", synthetic=False)
