import hashlib
import os

import pytest

from cxr14.steps import download
from cxr14.steps.download import DownloadError, Settings, fetch, fetch_first

FAST = Settings(retries=3, backoff=0.01, timeout=5, chunk_mb=0.01)


def _payload(n=100_000):
    return os.urandom(n)


def test_cut_off_transfer_resumes_with_range(http_mirror, tmp_path):
    base, root, faults = http_mirror
    data = _payload()
    (root / "images_01.tar.gz").write_bytes(data)
    faults["cut"]["/images_01.tar.gz"] = 30_000
    dest = tmp_path / "out" / "a.archive"
    info = fetch(f"{base}/images_01.tar.gz", dest, settings=FAST, progress=False)
    assert dest.read_bytes() == data
    assert info["sha256"] == hashlib.sha256(data).hexdigest()
    ranges = [r for p, r in faults["log"] if p == "/images_01.tar.gz"]
    # The second request asks for the rest, from the last whole chunk written (never from zero).
    assert ranges[0] is None and len(ranges) == 2
    assert 0 < int(ranges[1][6:-1]) <= 30_000
    assert not dest.with_name("a.archive.part").exists()


def test_partial_file_from_an_earlier_run_is_resumed(http_mirror, tmp_path):
    base, root, faults = http_mirror
    data = _payload()
    (root / "x.bin").write_bytes(data)
    dest = tmp_path / "x.bin"
    dest.with_name("x.bin.part").write_bytes(data[:12345])
    fetch(f"{base}/x.bin", dest, settings=FAST, progress=False)
    assert dest.read_bytes() == data
    assert faults["log"][0][1] == "bytes=12345-"


def test_server_errors_are_retried(http_mirror, tmp_path):
    base, root, faults = http_mirror
    data = _payload(5000)
    (root / "x.bin").write_bytes(data)
    faults["status"]["/x.bin"] = [500, 503]
    fetch(f"{base}/x.bin", tmp_path / "x.bin", settings=FAST, progress=False)
    assert (tmp_path / "x.bin").read_bytes() == data
    assert len(faults["log"]) == 3


def test_persistent_server_error_fails_clearly(http_mirror, tmp_path):
    base, root, faults = http_mirror
    (root / "x.bin").write_bytes(b"x")
    faults["status"]["/x.bin"] = [500] * 10
    with pytest.raises(DownloadError, match=r"x\.bin.*500"):
        fetch(f"{base}/x.bin", tmp_path / "x.bin", settings=FAST, progress=False)
    assert not (tmp_path / "x.bin").exists()


def test_404_fails_with_a_clear_message(http_mirror, tmp_path):
    base, _, _ = http_mirror
    with pytest.raises(DownloadError, match=r"not found.*images_07\.tar\.gz: 404.*images_007\.zip: 404"):
        fetch_first(download.archive_candidates(7, {}, base), tmp_path / "a", settings=FAST, progress=False)
    assert not (tmp_path / "a").exists()


def test_checksum_mismatch_fails_and_leaves_no_output(http_mirror, tmp_path):
    base, root, _ = http_mirror
    (root / "x.bin").write_bytes(_payload(5000))
    dest = tmp_path / "x.bin"
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        fetch(f"{base}/x.bin", dest, settings=FAST, sha256="0" * 64, progress=False)
    assert not dest.exists() and not dest.with_name("x.bin.part").exists()


def test_pinned_size_mismatch_fails(http_mirror, tmp_path):
    base, root, _ = http_mirror
    (root / "x.bin").write_bytes(b"12345")
    with pytest.raises(DownloadError, match="config pins 6"):
        fetch(f"{base}/x.bin", tmp_path / "x.bin", settings=FAST, expected_bytes=6, progress=False)


def test_kaggle_name_is_found_when_the_box_name_is_not(http_mirror, tmp_path):
    base, root, _ = http_mirror
    (root / "images_003.zip").write_bytes(b"zipdata")
    info = fetch_first(download.archive_candidates(3, {}, base), tmp_path / "a", settings=FAST, progress=False)
    assert info["source"].endswith("images_003.zip")


@pytest.mark.parametrize("as_url", [False, True])
def test_local_directory_and_file_url_mirrors(tmp_path, as_url):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    data = _payload(3000)
    (mirror / "images_12.tar.gz").write_bytes(data)
    base = mirror.as_uri() if as_url else str(mirror)
    dest = tmp_path / "out.archive"
    fetch_first(download.archive_candidates(12, {"url": "unused"}, base), dest, settings=FAST, progress=False)
    assert dest.read_bytes() == data


def test_official_url_is_used_without_a_mirror():
    assert download.archive_candidates(1, {"url": "https://example/x.gz"}, None) == ["https://example/x.gz"]


def test_missing_metadata_says_where_to_get_it(tmp_path):
    nowhere = str(tmp_path / "nowhere")
    with pytest.raises(DownloadError, match=r"test_list\.txt is missing.*nihcc.*put it in .*nowhere"):
        download.download_metadata(
            sources=download.metadata_candidates("test_list.txt", None, nowhere),
            out=tmp_path / "test_list.txt",
            metadata_dir=nowhere,
            **vars(FAST),
        )
    assert not (tmp_path / "test_list.txt").exists()


def test_gzipped_metadata_is_unpacked(tmp_path):
    import gzip

    folder = tmp_path / "meta"
    folder.mkdir()
    with gzip.open(folder / "test_list.txt.gz", "wt") as fh:
        fh.write("a.png\nb.png")
    download.fetch_metadata(
        download.metadata_candidates("test_list.txt", None, str(folder)),
        tmp_path / "test_list.txt",
        "help",
        settings=FAST,
        progress=False,
    )
    assert (tmp_path / "test_list.txt").read_text() == "a.png\nb.png"


def test_checksum_file_records_the_download(tmp_path):
    path = tmp_path / "x.sha256"
    download.write_checksum({"source": "http://127.0.0.1:1/images_01.tar.gz", "sha256": "ab" * 32}, path)
    assert path.read_text() == f"{'ab' * 32}  images_01.tar.gz\n"
