import io
import tarfile
import zipfile

import pytest

from cxr14.steps.extract import ImageCountError, UnsafeArchive, extract
from cxr14.tables import read_manifest


def _tar(path, members, link=None):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link[0])
            info.type, info.linkname = tarfile.SYMTYPE, link[1]
            tar.addfile(info)
    return path


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


PNGS = [("images/00000001_000.png", b"a" * 10), ("images/00000001_001.png", b"b" * 20)]


def test_box_tar_extracts_flat_with_a_manifest(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", PNGS + [("images/readme.txt", b"x")])
    result = extract(
        archive=archive, images=tmp_path / "out", manifest=tmp_path / "m.tsv", expected_images=2, count_tolerance=0.0
    )
    assert result["images"] == 2 and result["skipped"] == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["00000001_000.png", "00000001_001.png"]
    table = read_manifest(tmp_path / "m.tsv")
    assert table.to_dict("list") == {"image_index": ["00000001_000.png", "00000001_001.png"], "bytes": [10, 20]}


@pytest.mark.parametrize("prefix", ["images_001/images/", "images/"])
def test_kaggle_zip_layouts(tmp_path, prefix):
    archive = _zip(tmp_path / "images_001.zip", [(prefix + n.split("/")[-1], d) for n, d in PNGS])
    result = extract(
        archive=archive, images=tmp_path / "out", manifest=tmp_path / "m.tsv", expected_images=2, count_tolerance=0.0
    )
    assert result["images"] == 2
    assert (tmp_path / "out" / "00000001_001.png").read_bytes() == b"b" * 20


@pytest.mark.parametrize("bad", ["../evil.png", "images/../../evil.png", "/etc/evil.png"])
def test_path_traversal_is_refused_and_leaves_nothing(tmp_path, bad):
    archive = _tar(tmp_path / "a.tar.gz", PNGS + [(bad, b"x")])
    with pytest.raises(UnsafeArchive, match="path traversal"):
        extract(
            archive=archive,
            images=tmp_path / "out",
            manifest=tmp_path / "m.tsv",
            expected_images=3,
            count_tolerance=0.0,
        )
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    assert not (tmp_path / "m.tsv").exists() and not (tmp_path.parent / "evil.png").exists()


def test_zip_traversal_is_refused(tmp_path):
    archive = _zip(tmp_path / "a.zip", [("../evil.png", b"x")])
    with pytest.raises(UnsafeArchive):
        extract(
            archive=archive,
            images=tmp_path / "out",
            manifest=tmp_path / "m.tsv",
            expected_images=1,
            count_tolerance=0.0,
        )


def test_links_are_refused(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", PNGS, link=("images/link.png", "/etc/passwd"))
    with pytest.raises(UnsafeArchive, match="link"):
        extract(
            archive=archive,
            images=tmp_path / "out",
            manifest=tmp_path / "m.tsv",
            expected_images=3,
            count_tolerance=0.0,
        )


def _extract_to(tmp_path, archive, expected_images=3):
    return extract(archive=archive, images=tmp_path / "out", manifest=tmp_path / "m.tsv",
                   expected_images=expected_images, count_tolerance=0.0)  # fmt: skip


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_devices_are_refused(tmp_path, kind):
    archive = tmp_path / "a.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("images/00000002_000.png")
        info.type, info.devmajor, info.devminor = kind, 1, 3
        tar.addfile(info)
    with pytest.raises(UnsafeArchive, match="refusing device member 'images/00000002_000.png'"):
        _extract_to(tmp_path, archive)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_a_member_past_any_real_images_size_is_refused_before_it_is_written(tmp_path, monkeypatch):
    from cxr14.steps import extract as module

    monkeypatch.setattr(module, "MAX_IMAGE_BYTES", 15)
    archive = _tar(tmp_path / "a.tar.gz", PNGS)  # 10 and 20 bytes
    with pytest.raises(UnsafeArchive, match=r"'images/00000001_001.png': it expands to 20 bytes, past 15"):
        _extract_to(tmp_path, archive, expected_images=2)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    zipped = _zip(tmp_path / "a.zip", PNGS)
    with pytest.raises(UnsafeArchive, match="expands to 20 bytes"):
        _extract_to(tmp_path, zipped, expected_images=2)


def test_more_images_than_the_catalog_says_stop_the_extraction_early(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", PNGS + [("images/00000003_000.png", b"c")])
    with pytest.raises(ImageCountError, match="more than the 2 PNG images the catalog says it holds"):
        _extract_to(tmp_path, archive, expected_images=2)
    assert not (tmp_path / "out.partial").exists()


def test_image_count_is_checked_with_tolerance(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", PNGS)
    with pytest.raises(ImageCountError, match="found 2 PNG images, expected 4"):
        extract(
            archive=archive,
            images=tmp_path / "out",
            manifest=tmp_path / "m.tsv",
            expected_images=4,
            count_tolerance=0.0,
        )
    assert not (tmp_path / "out").exists()
    result = extract(
        archive=archive, images=tmp_path / "out", manifest=tmp_path / "m.tsv", expected_images=4, count_tolerance=0.5
    )
    assert result["images"] == 2


def test_finished_extraction_is_not_redone(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", PNGS)
    extract(
        archive=archive, images=tmp_path / "out", manifest=tmp_path / "m.tsv", expected_images=2, count_tolerance=0.0
    )
    assert extract(
        archive=archive, images=tmp_path / "out", manifest=tmp_path / "m.tsv", expected_images=2, count_tolerance=0.0
    )["reused"]
    (tmp_path / "out" / "00000001_000.png").unlink()
    assert not extract(
        archive=archive, images=tmp_path / "out", manifest=tmp_path / "m.tsv", expected_images=2, count_tolerance=0.0
    )["reused"]


def test_not_an_archive(tmp_path):
    (tmp_path / "x").write_bytes(b"hello")
    with pytest.raises(ValueError, match="neither a tar nor a zip"):
        extract(
            archive=tmp_path / "x",
            images=tmp_path / "out",
            manifest=tmp_path / "m.tsv",
            expected_images=1,
            count_tolerance=0.0,
        )
