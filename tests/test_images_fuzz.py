"""Hostile and broken images through the one reader (`cxr14.images.read_gray`, which the shards,
`predict` and the app share): sizes declared in headers are refused before any decoding, and a fuzz
campaign of mutated PNG, JPEG and DICOM files ends each in an image or the one documented error."""

import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import NIH_SAMPLE, needs_shared, png_bomb
from cxr14 import images
from cxr14.images import BadImage, read_gray, write_dicom


@pytest.fixture
def no_decoding(monkeypatch):
    """Any decoding of pixels fails the test: what is refused must be refused from the header."""

    def decoded(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(images.cv2, "imdecode", decoded)
    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(decoded))


def _dicom_bytes(tmp_path, name="x.dcm", pixels=None, **tags) -> bytes:
    path = write_dicom(tmp_path / name, np.zeros((8, 8), np.uint16) if pixels is None else pixels)
    if tags:
        ds = pydicom.dcmread(path)
        for key, value in tags.items():
            if key == "TransferSyntaxUID":  # a compressed syntax: one (bogus) encapsulated frame
                ds.file_meta.TransferSyntaxUID = value
                ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8 not really compressed"])
            else:
                setattr(ds, key, value)
        ds.save_as(path, enforce_file_format=True)
    return Path(path).read_bytes()


def _jpeg_bomb(width: int, height: int, channels: int = 1) -> bytes:
    """A real JPEG (gray or colour) with its frame header's size rewritten."""
    data = bytearray(cv2.imencode(".jpg", np.full((16, 16, channels), 90, np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def test_declared_sizes_past_the_limit_are_refused_before_decoding(no_decoding, tmp_path):
    with pytest.raises(BadImage, match=r"PNG header says 30000 x 30000 pixels \(900 megapixels decoded\), over the "
                                       r"limit of 40 \(--max-megapixels\)"):  # fmt: skip
        read_gray(png_bomb(30000, 30000))
    with pytest.raises(BadImage, match=r"JPEG header says 65000 x 65000 pixels \(4.22e\+03 megapixels"):
        read_gray(_jpeg_bomb(65000, 65000))
    with pytest.raises(BadImage, match=r"JPEG header says 5000 x 5000 pixels x 3 samples \(75 megapixels"):
        read_gray(_jpeg_bomb(5000, 5000, channels=3))
    with pytest.raises(BadImage, match=r"DICOM header says 30000 x 20000 pixels \(600 megapixels"):
        read_gray(_dicom_bytes(tmp_path, Rows=20000, Columns=30000))
    with pytest.raises(BadImage, match=r"DICOM header says 2000 x 2000 pixels x 1000 frames \(4e\+03 megapixels"):
        read_gray(_dicom_bytes(tmp_path, Rows=2000, Columns=2000, NumberOfFrames=1000))
    with pytest.raises(BadImage, match=r"PNG header says 0 x 30 pixels: not an image"):
        read_gray(png_bomb(0, 30))
    with pytest.raises(BadImage, match=r"over the limit of 0.01"):  # the limit is the caller's
        read_gray(png_bomb(200, 200), max_megapixels=0.01)


def test_within_the_limit_the_same_files_decode():
    assert read_gray(png_bomb(300, 64)).shape == (64, 300)
    assert read_gray(_jpeg_bomb(16, 16)).shape == (16, 16)


def test_other_formats_and_undecodable_dicom_syntaxes_are_named(tmp_path):
    with pytest.raises(BadImage, match="not a PNG, JPEG or DICOM file"):
        read_gray(cv2.imencode(".bmp", np.zeros((8, 8), np.uint8))[1].tobytes())
    with pytest.raises(BadImage, match="not a PNG, JPEG or DICOM file"):
        read_gray(cv2.imencode(".tiff", np.zeros((8, 8), np.uint8))[1].tobytes())
    jpeg_ls = _dicom_bytes(tmp_path, TransferSyntaxUID=pydicom.uid.JPEGLSLossless)
    with pytest.raises(BadImage, match=r"DICOM compressed as JPEG-LS Lossless .* needs a decoder that is not "
                                       r"installed: .*pyjpegls"):  # fmt: skip
        read_gray(jpeg_ls)
    with pytest.raises(BadImage, match="unreadable DICOM header"):
        read_gray(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI")


def _seeds(tmp_path_factory) -> dict[str, bytes]:
    """Small valid files of each kind the reader takes, to mutate."""
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 255, (24, 20), dtype=np.uint8)
    folder = tmp_path_factory.mktemp("seeds")
    return {
        "png8": cv2.imencode(".png", gray)[1].tobytes(),
        "png16": cv2.imencode(".png", (gray.astype(np.uint16) * 257))[1].tobytes(),
        "png_rgba": cv2.imencode(".png", cv2.cvtColor(gray, cv2.COLOR_GRAY2BGRA))[1].tobytes(),
        "jpeg": cv2.imencode(".jpg", gray)[1].tobytes(),
        "jpeg_progressive": cv2.imencode(
            ".jpg", cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]
        )[1].tobytes(),  # fmt: skip
        "dicom": Path(write_dicom(folder / "a.dcm", gray.astype(np.uint16) * 16, window=(2000, 4000))).read_bytes(),
        "dicom_m1": Path(write_dicom(folder / "b.dcm", 255 - gray, monochrome1=True, bits_stored=8)).read_bytes(),
    }


# A mutation: (kind, position as a fraction of the file, bytes). Header-sized fields are overwritten
# with the values that break parsers: zero, huge, negative when signed.
MUTATION = st.tuples(
    st.sampled_from(["flip", "truncate", "insert", "overwrite", "delete"]),
    st.floats(0, 1, allow_nan=False),
    st.one_of(
        st.binary(min_size=1, max_size=8),
        st.sampled_from(
            [
                b"\xff\xff\xff\xff",
                b"\x00\x00\x00\x00",
                b"\x7f\xff\xff\xff",
                b"\x00\x00\x75\x30",
                b"\xff\xd9",
                b"\xff\xda",
                b"IEND",
                b"IHDR",
            ]
        ),  # fmt: skip
    ),
)


def mutate(data: bytes, mutations) -> bytes:
    out = bytearray(data)
    for kind, where, payload in mutations:
        i = min(int(where * len(out)), max(len(out) - 1, 0))
        if kind == "flip" and out:
            out[i] ^= payload[0] or 1
        elif kind == "truncate":
            del out[i:]
        elif kind == "insert":
            out[i:i] = payload
        elif kind == "overwrite":
            out[i : i + len(payload)] = payload
        elif kind == "delete":
            del out[i : i + len(payload)]
    return bytes(out)


def recrc(data: bytes) -> bytes:
    """A PNG with every whole chunk's CRC made right again, so that a mutation reaches the decoder
    instead of failing the checksum."""
    out, pos = bytearray(data), 8
    while pos + 12 <= len(out):
        length = int.from_bytes(out[pos : pos + 4], "big")
        end = pos + 8 + length
        if end + 4 > len(out):
            break
        out[end : end + 4] = zlib.crc32(out[pos + 4 : end]).to_bytes(4, "big")
        pos = end + 4
    return bytes(out)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    return _seeds(tmp_path_factory)


TRIED = {"inputs": 0, "images": 0, "refused": 0}


@pytest.mark.timeout(600)
@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom's notes on the damaged headers it reads
@pytest.mark.parametrize("kind", ["png8", "png16", "png_rgba", "jpeg", "jpeg_progressive", "dicom", "dicom_m1"])
def test_mutated_files_end_in_an_image_or_bad_image(seeds, kind):
    """600 mutated files per kind (seeded: the same ones in every run): each gives a 2-D
    uint8 image no larger than its limit allows, or BadImage; any other exception fails here."""
    start = time.perf_counter()

    @settings(max_examples=600, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
    @given(st.lists(MUTATION, min_size=1, max_size=6), st.booleans())
    def one(mutations, fix_crc):
        data = mutate(seeds[kind], mutations)
        if fix_crc and kind.startswith("png"):
            data = recrc(data)
        TRIED["inputs"] += 1
        try:
            img = read_gray(data, max_megapixels=0.05)
        except BadImage:
            TRIED["refused"] += 1
            return
        TRIED["images"] += 1
        assert isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 2
        assert img.size <= 0.05e6

    one()
    print(f"{kind}: {TRIED} after {time.perf_counter() - start:.1f} s")


@needs_shared
def test_the_real_nih_sample_reads_within_the_default_limit():
    for png in sorted(NIH_SAMPLE.glob("*.png")):
        assert read_gray(png.read_bytes()).shape == (1024, 1024)
