"""The evaluation's Grad-CAM and localisation inputs (cxr14/explain.py); the scores themselves are
checked on a trained run in test_evaluate."""

from cxr14 import explain


def test_box_list_spelling_is_mapped(tmp_path):
    path = tmp_path / "boxes.csv"
    path.write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\na.png,Infiltrate,1,2,3,4\nb.png,Mass,5,6,7,8\n")
    boxes = explain.read_boxes(path)
    assert boxes.finding.tolist() == ["Infiltration", "Mass"] and boxes.w.tolist() == [3, 7]
