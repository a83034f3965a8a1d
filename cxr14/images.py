"""Read any chest X-ray (PNG, JPEG or DICOM) to one 8-bit channel and resize it: the one preprocessing
path shared by the shard stage (NIH and external collections), the batch predictor and the web app, so
the same pixels give the same numbers whatever the container."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import cv2
import numpy as np


class BadImage(ValueError):
    """The file is not a decodable image; the message says why."""


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
# The guard of a caller that names no limits. The workflow, `cxr14 predict` and the app take theirs from
# the config schema's `images` section, which tests/test_registries.py holds equal to these. The
# largest chest radiographs are about 4,300 x 4,300 pixels (18.5 megapixels, one sample each).
DEFAULT_MAX_MB = 64
DEFAULT_MAX_MEGAPIXELS = 40.0
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type: gray, RGB, palette, gray+alpha, RGBA
# JPEG start-of-frame markers (baseline, extended, progressive, lossless; Huffman or arithmetic)
JPEG_FRAMES = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
JPEG_STANDALONE = {0x01, *range(0xD0, 0xD9)}  # markers without a length: TEM, RSTn, SOI


def check_size(kind: str, width: int, height: int, max_megapixels: float, frames: int = 1, samples: int = 1) -> None:
    """Refuse an image whose header promises more decoded values than `max_megapixels` million (or
    none): a few hundred bytes can declare gigabytes (a decompression bomb), so this runs before
    any decoding."""
    if width <= 0 or height <= 0 or frames <= 0 or samples <= 0:
        raise BadImage(f"{kind} header says {width} x {height} pixels: not an image")
    values = width * height * frames * samples
    if values > max_megapixels * 1e6:
        what = f"{width} x {height} pixels" + (f" x {frames} frames" if frames > 1 else "")
        what += f" x {samples} samples" if samples > 1 else ""
        raise BadImage(
            f"{kind} header says {what} ({values / 1e6:.3g} megapixels decoded), over the limit of "
            f"{max_megapixels:g} (--max-megapixels)"
        )


def png_size(data: bytes) -> tuple[int, int, int]:
    """(width, height, samples per pixel) from a PNG's IHDR chunk."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise BadImage("truncated PNG: no IHDR header")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[25] not in PNG_SAMPLES:
        raise BadImage(f"PNG colour type {data[25]} does not exist")
    return width, height, PNG_SAMPLES[data[25]]


def jpeg_size(data: bytes) -> tuple[int, int, int]:
    """(width, height, components) from a JPEG's start-of-frame segment."""
    i = _jpeg_frame(data)
    return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big"), data[i + 9]


def _jpeg_frame(data: bytes) -> int:
    """Where a JPEG's start-of-frame segment starts, found by walking the segments from the start
    (bounded by the file: each step moves forward)."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise BadImage(f"corrupt JPEG: no marker at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in JPEG_STANDALONE:
            i += 2
            continue
        if marker == 0xDA:
            break  # start of scan before any frame header
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in JPEG_FRAMES:
            if length < 8 or i + 10 > len(data):
                raise BadImage("truncated JPEG frame header")
            return i
        if length < 2:
            raise BadImage(f"corrupt JPEG: segment length {length} at byte {i}")
        i += 2 + length
    raise BadImage("JPEG without a frame header (truncated or corrupt)")


PNG_PHOTOMETRIC = {0: "gray", 2: "RGB", 3: "palette", 4: "gray+alpha", 6: "RGBA"}


def describe(path) -> dict:
    """What a file's header says of its image, its pixels left unread: `kind` (PNG, JPEG, DICOM),
    `width`, `height`, `bit_depth` (bits per sample: DICOM's BitsStored) and `photometric` (DICOM's
    PhotometricInterpretation; a PNG's colour type; a JPEG's component count). A file that says nothing
    readable is `unreadable`, the reason left to the reader that decodes it."""
    try:
        with open(path, "rb") as file:
            head = file.read(1 << 16)
        if _is_dicom(head):
            import pydicom

            ds = pydicom.dcmread(path, stop_before_pixels=True)
            return {"kind": "DICOM", "width": int(ds.Columns), "height": int(ds.Rows),
                    "bit_depth": int(ds.get("BitsStored") or ds.BitsAllocated),
                    "photometric": str(ds.get("PhotometricInterpretation", "") or "not said")}  # fmt: skip
        if head.startswith(b"\x89PNG"):
            width, height, _ = png_size(head)
            return {"kind": "PNG", "width": width, "height": height, "bit_depth": int(head[24]),
                    "photometric": PNG_PHOTOMETRIC[head[25]]}  # fmt: skip
        if head.startswith(b"\xff\xd8"):
            width, height, components = jpeg_size(head)
            return {"kind": "JPEG", "width": width, "height": height, "bit_depth": int(head[_jpeg_frame(head) + 4]),
                    "photometric": "gray" if components == 1 else f"{components} components"}  # fmt: skip
    except Exception:  # noqa: BLE001  (any header that cannot be read is `unreadable` here)
        pass
    return {"kind": "unreadable", "width": None, "height": None, "bit_depth": None, "photometric": None}


def to_gray8(img: np.ndarray) -> np.ndarray:
    """Any decoded array (gray, BGR, BGRA; 8 or 16 bit, or float) to one 8-bit channel.

    Colour is converted with OpenCV's luminance weights and alpha is dropped (NIH's RGBA PNGs are
    opaque). Deeper images are stretched linearly from their own minimum to maximum, since 12- and
    16-bit radiographs rarely use the full range of their type.
    """
    if img.ndim == 3:
        code = {1: None, 3: cv2.COLOR_BGR2GRAY, 4: cv2.COLOR_BGRA2GRAY}.get(img.shape[2])
        if img.shape[2] not in (1, 3, 4):
            raise BadImage(f"unsupported channel count {img.shape[2]}")
        img = img[..., 0] if code is None else cv2.cvtColor(img, code)
    if img.ndim != 2:
        raise BadImage(f"unsupported image shape {img.shape}")
    if img.dtype == np.uint8:
        return img
    img = img.astype(np.float64)
    lo, hi = float(img.min()), float(img.max())
    scaled = (img - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(img)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def decode(data: bytes, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> np.ndarray:
    """Encoded PNG/JPEG bytes to a grayscale uint8 array, the header's size checked first (raises
    BadImage, also for any other format: OpenCV would decode a dozen, none of them a radiograph's)."""
    if not data:
        raise BadImage("empty file")
    if data.startswith(PNG_SIGNATURE):
        width, height, samples = png_size(data)
        check_size("PNG", width, height, max_megapixels, samples=samples)
    elif data.startswith(b"\xff\xd8"):
        width, height, samples = jpeg_size(data)
        check_size("JPEG", width, height, max_megapixels, samples=samples)
    else:
        raise BadImage("not a PNG, JPEG or DICOM file")
    buf = np.frombuffer(data, np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise BadImage("not a decodable image (truncated or corrupt)")
    return to_gray8(img)


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """Area interpolation to size x size (NIH images are square; others are stretched).

    Where the image shrinks by a whole factor k >= 2 to a side still >= size (1024 -> 256 on the
    way to 224), that step goes first: OpenCV averages whole k x k blocks ~4x faster than it
    resamples a fractional area, and the result differs from one direct step by under one gray
    level on average. Every caller (shards, predict, app) goes through here, so they agree.
    """
    if img.shape == (size, size):
        return img
    h, w = img.shape[:2]
    k = min(h, w) // size
    if k >= 2 and h % k == 0 and w % k == 0:
        img = cv2.resize(img, (w // k, h // k), interpolation=cv2.INTER_AREA)
        if img.shape[:2] == (size, size):
            return img
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def load(path, size: int, max_megapixels: float) -> np.ndarray:
    """A file (PNG, JPEG or DICOM) to the (size, size) uint8 array the model sees (no file-size limit:
    a collection's files are trusted that far; the pixel limit still holds)."""
    with open(path, "rb") as fh:
        return resize(read_gray(fh.read(), max_mb=float("inf"), max_megapixels=max_megapixels), size)


def encode_png(img: np.ndarray) -> bytes:
    """Lossless PNG bytes with a fixed compression level (so the same pixels give the same bytes)."""
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise BadImage("PNG encoding failed")
    return buf.tobytes()


def _is_dicom(data: bytes) -> bool:
    return len(data) > 132 and data[128:132] == b"DICM"


def read_dicom(data: bytes, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> np.ndarray:
    """A DICOM image to 8-bit grayscale by the rule radiology viewers follow (DICOM PS3.3 C.11):

    1. the modality LUT (RescaleSlope and RescaleIntercept, or a Modality LUT Sequence);
    2. the header's VOI LUT Sequence, else its window (WindowCenter, WindowWidth, VOILUTFunction),
       else nothing;
    3. a linear map onto 0-255 of the range those steps can give: the VOI LUT's entries, or the
       stored range (BitsStored, signed or not) through the rescale. It is never the image's own
       minimum and maximum, so an 8-bit image stored without a window keeps its pixels exactly;
    4. MONOCHROME1 (high values dark) inverted, so bone is bright as in the NIH PNGs.

    Colour images are converted to gray as PNGs are; a multi-frame file gives its first frame. The
    header's Rows x Columns x NumberOfFrames x SamplesPerPixel is checked against `max_megapixels`,
    and a compressed transfer syntax against the decoders installed, before any pixel is decoded.
    """
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        rows, columns = int(ds.Rows), int(ds.Columns)
        frames, samples = int(ds.get("NumberOfFrames") or 1), int(ds.get("SamplesPerPixel") or 1)
    except Exception as exc:
        raise BadImage(f"unreadable DICOM header ({exc})") from exc
    check_size("DICOM", columns, rows, max_megapixels, frames, samples)
    _check_decoder(ds)
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        raise BadImage(f"unreadable DICOM pixels ({exc})") from exc
    if pixels.ndim == 3 and pixels.shape[-1] not in (3, 4):
        pixels = pixels[0]  # a multi-frame file: the first frame
    if pixels.ndim == 3:
        return to_gray8(np.ascontiguousarray(pixels[..., ::-1]))  # pydicom gives RGB; OpenCV takes BGR
    values = np.asarray(apply_modality_lut(pixels, ds), np.float64)
    lo, hi = _dicom_output_range(ds, pixels)
    if "VOILUTSequence" in ds:
        values = np.asarray(apply_voi(values, ds), np.float64)
        lo, hi = 0.0, float(2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        values = apply_windowing(values, ds)  # onto the same output range as the rescaled stored values
    gray = np.clip(np.rint((values - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)
    return 255 - gray if ds.get("PhotometricInterpretation", "") == "MONOCHROME1" else gray


def _check_decoder(ds) -> None:
    """A compressed DICOM whose transfer syntax no installed package decodes is named as such."""
    from pydicom.pixels.decoders.base import get_decoder

    syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
    if syntax is None:
        return
    if not syntax.is_transfer_syntax:
        raise BadImage(f"DICOM transfer syntax {str(syntax)!r} is not a known transfer syntax")
    if not syntax.is_compressed:
        return
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as exc:
        raise BadImage(f"DICOM transfer syntax {syntax.name} ({syntax}) is not supported ({exc})") from exc
    if not decoder.is_available:
        needs = "; ".join(decoder.missing_dependencies) or "a plugin"
        raise BadImage(f"DICOM compressed as {syntax.name} ({syntax}) needs a decoder that is not installed: {needs}")


def _dicom_output_range(ds, pixels: np.ndarray) -> tuple[float, float]:
    """The values a DICOM image's modality LUT can give (the range pydicom's windowing maps onto)."""
    if "ModalityLUTSequence" in ds:
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    bits = int(ds.get("BitsStored", pixels.dtype.itemsize * 8))
    lo, hi = (0, 2**bits - 1) if ds.get("PixelRepresentation", 0) == 0 else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        lo, hi = sorted((lo * float(slope) + float(intercept), hi * float(slope) + float(intercept)))
    return float(lo), float(hi)


def read_gray(
    data: bytes, max_mb: float = DEFAULT_MAX_MB, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS
) -> np.ndarray:
    """Any supported file's bytes (PNG, JPEG, DICOM) to full-resolution grayscale uint8. BadImage, with
    the reason, is the one error for every file that cannot be read: too many bytes, a header that
    promises more than `max_megapixels` million decoded values (checked before decoding), another
    format, or damaged content."""
    if not data:
        raise BadImage("empty file")
    if len(data) > max_mb * 2**20:
        raise BadImage(f"file is {len(data) / 2**20:.1f} MB, over the {max_mb:g} MB limit")
    return read_dicom(data, max_megapixels) if _is_dicom(data) else decode(data, max_megapixels)


def write_dicom(path, pixels, monochrome1=False, window=None, bits_stored=12, rescale=None, **tags):
    """Write `pixels` to `path` as a DICOM file (the demo's and the tests' DICOMs): 16-bit words,
    `bits_stored` of them used, a DX secondary capture; with a (centre, width) `window` and a (slope,
    intercept) `rescale` when given, and any other `tags` (PatientSex="F", PatientAge="081Y").
    MONOCHROME1 only labels the pixels; invert them first."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    # A UID derived from the file's name, pixels and tags, not a random one: the same demo is the same
    # files, so its ingest report (the images' digest) and everything after it are too.
    source = [
        Path(path).name,
        hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest(),
        repr(sorted(tags.items())),
    ]
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=source)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Rows, ds.Columns = "DX", pixels.shape[0], pixels.shape[1]
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = (
        1,
        16,
        bits_stored,
        bits_stored - 1,
        0,
    )
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    if rescale:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path
