"""Decoding, encoding and transcoding of pixel data with pydicom's pixel pipeline (pure, CPU-bound).

Codecs: pydicom's own (native, RLE) plus the pylibjpeg plugins (libjpeg: JPEG baseline/extended/lossless,
JPEG-LS; openjpeg: JPEG 2000 and HTJ2K decode, JPEG 2000 encode; rle: fast RLE) and Pillow (JPEG and
JPEG 2000 decode). What each path can do is `can_transcode`; the matrix is in docs/conformance.md.

Everything here is synchronous and may take seconds on large frames: callers run it off the event
loop (``features/frames.py`` ``run_cpu``) and check `check_pixel_budget` first.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.encoders.base import get_encoder
from pydicom.uid import UID

from dicomlake.errors import DicomWebError, NotAcceptableError

__all__ = [
    "DECODABLE",
    "ENCODABLE",
    "EXPLICIT_VR_LITTLE_ENDIAN",
    "NATIVE",
    "PixelAttributes",
    "can_transcode",
    "check_pixel_budget",
    "decode_frame",
    "encode_frame",
    "native_bytes",
    "transcode_frame",
    "transcode_instance",
]

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"

#: Pixel data stored uncompressed (deflate compresses the whole data set, not the pixels).
NATIVE = frozenset(
    {IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN}
)
#: Compressed transfer syntaxes a source may be in, decoded to Explicit VR Little Endian.
_COMPRESSED_CANDIDATES = (
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless (Process 14)
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.201",  # HTJ2K lossless
    "1.2.840.10008.1.2.4.202",  # HTJ2K lossless RPCL
    "1.2.840.10008.1.2.4.203",  # HTJ2K
    "1.2.840.10008.1.2.5",  # RLE
)
DECODABLE = frozenset(ts for ts in _COMPRESSED_CANDIDATES if get_decoder(UID(ts)).is_available)
#: Targets produced from uncompressed pixel data.
ENCODABLE = frozenset(ts for ts in (JPEG_2000_LOSSLESS, RLE_LOSSLESS) if get_encoder(UID(ts)).is_available)
#: Decoded pixels per frame above which decoding, rendering and transcoding are refused (406).
MAX_FRAME_PIXELS = 100_000_000
#: Instances larger than this are not transcoded whole (406): the file would be held in memory.
MAX_TRANSCODE_BYTES = 512 * 1024 * 1024

_PIXEL_TAGS = {
    "SamplesPerPixel": "00280002",
    "PhotometricInterpretation": "00280004",
    "PlanarConfiguration": "00280006",
    "Rows": "00280010",
    "Columns": "00280011",
    "BitsAllocated": "00280100",
    "BitsStored": "00280101",
    "HighBit": "00280102",
    "PixelRepresentation": "00280103",
}


def can_transcode(source: str, target: str) -> bool:
    """Whether pixel data stored in ``source`` can be served in ``target``."""
    if source == target:
        return True
    if target == EXPLICIT_VR_LITTLE_ENDIAN:
        return source in NATIVE or source in DECODABLE
    if target in ENCODABLE:
        return source in NATIVE
    return False


@dataclass(frozen=True, slots=True)
class PixelAttributes:
    """The Image Pixel module attributes needed to decode one frame."""

    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    high_bit: int
    pixel_representation: int
    photometric_interpretation: str
    planar_configuration: int

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> PixelAttributes:
        """From an instance's DICOM JSON (as stored in the index)."""

        def first(keyword: str, default: Any) -> Any:
            value = metadata.get(_PIXEL_TAGS[keyword], {}).get("Value")
            return value[0] if value else default

        bits_allocated = int(first("BitsAllocated", 8))
        bits_stored = int(first("BitsStored", bits_allocated))
        return cls(
            rows=int(first("Rows", 0)),
            columns=int(first("Columns", 0)),
            samples_per_pixel=int(first("SamplesPerPixel", 1)),
            bits_allocated=bits_allocated,
            bits_stored=bits_stored,
            high_bit=int(first("HighBit", bits_stored - 1)),
            pixel_representation=int(first("PixelRepresentation", 0)),
            photometric_interpretation=str(first("PhotometricInterpretation", "MONOCHROME2")).strip(),
            planar_configuration=int(first("PlanarConfiguration", 0)),
        )

    @property
    def pixels(self) -> int:
        return self.rows * self.columns * max(1, self.samples_per_pixel)

    def dataset(self, transfer_syntax: str, pixel_data: bytes, *, encapsulated: bool) -> Dataset:
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
        ds.Rows = self.rows
        ds.Columns = self.columns
        ds.SamplesPerPixel = self.samples_per_pixel
        ds.BitsAllocated = self.bits_allocated
        ds.BitsStored = self.bits_stored
        ds.HighBit = self.high_bit
        ds.PixelRepresentation = self.pixel_representation
        ds.PhotometricInterpretation = self.photometric_interpretation
        if self.samples_per_pixel > 1:
            ds.PlanarConfiguration = self.planar_configuration
        ds.NumberOfFrames = 1
        ds.PixelData = encapsulate([pixel_data]) if encapsulated else pixel_data
        ds["PixelData"].VR = "OB" if encapsulated or self.bits_allocated <= 8 else "OW"
        if encapsulated:
            ds["PixelData"].is_undefined_length = True
        ds.set_original_encoding(
            transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN, transfer_syntax != EXPLICIT_VR_BIG_ENDIAN
        )
        return ds


def check_pixel_budget(attrs: PixelAttributes, what: str) -> None:
    if attrs.pixels > MAX_FRAME_PIXELS:
        raise NotAcceptableError(
            f"The frame has {attrs.pixels} pixel samples, more than the {MAX_FRAME_PIXELS} this server will "
            f"decode to {what}; ask for the frame with transfer-syntax=* instead.",
            code="FrameTooLarge",
        )


def decode_frame(frame: bytes, attrs: PixelAttributes, transfer_syntax: str) -> np.ndarray:
    """One frame as an array, colour converted to RGB (YBR, as pydicom does by default)."""
    check_pixel_budget(attrs, "pixels")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom\.pixels\..*")
    syntax = EXPLICIT_VR_LITTLE_ENDIAN if transfer_syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN else transfer_syntax
    ds = attrs.dataset(syntax, frame, encapsulated=syntax not in NATIVE)
    arr, _ = get_decoder(UID(syntax)).as_array(ds, index=0)
    return arr


def native_bytes(arr: np.ndarray, attrs: PixelAttributes) -> bytes:
    """Little-endian native pixel bytes (colour-by-pixel) of a decoded frame."""
    dtype = arr.dtype.newbyteorder("<")
    return bytes(np.ascontiguousarray(arr, dtype=dtype).tobytes())


def encode_frame(arr: np.ndarray, attrs: PixelAttributes, transfer_syntax: str) -> bytes:
    """Encode one decoded frame (lossless targets only: JPEG 2000 lossless, RLE)."""
    photometric = attrs.photometric_interpretation
    if attrs.samples_per_pixel == 3:
        photometric = "RGB"  # decode_frame converted YBR to RGB
    encoder = get_encoder(UID(transfer_syntax))
    kwargs: dict[str, Any] = {
        "rows": attrs.rows,
        "columns": attrs.columns,
        "samples_per_pixel": attrs.samples_per_pixel,
        "bits_allocated": attrs.bits_allocated,
        "bits_stored": attrs.bits_stored,
        "pixel_representation": attrs.pixel_representation,
        "photometric_interpretation": photometric,
        "number_of_frames": 1,
        "planar_configuration": 0,
    }
    return bytes(encoder.encode(arr, **kwargs))


def transcode_frame(frame: bytes, attrs: PixelAttributes, source: str, target: str) -> bytes:
    """One frame's bytes from ``source`` to ``target`` (callers check `can_transcode` first).
    A codec's refusal (corrupt data, a frame too small for JPEG 2000's 6 resolutions) is a 406."""
    with codec_errors(target):
        arr = decode_frame(frame, attrs, source)
        if target == EXPLICIT_VR_LITTLE_ENDIAN:
            return native_bytes(arr, attrs)
        return encode_frame(arr, attrs, target)


@contextlib.contextmanager
def codec_errors(target: str) -> Iterator[None]:
    # Codec advisories (e.g. a JFIF marker in an "RGB" JPEG) are expected on real data: not errors.
    # Idempotent (the filter list is deduplicated) and thread-safe, unlike warnings.catch_warnings.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom\.pixels\..*")
    try:
        yield
    except DicomWebError:
        raise
    except Exception as e:
        raise NotAcceptableError(
            f"The pixel data could not be converted to {target} ({type(e).__name__}: {str(e)[:200]}); "
            "ask for transfer-syntax=* to receive it as stored.",
            code="TranscodingFailed",
        ) from e


def transcode_instance(data: bytes, target: str) -> bytes:
    """A whole Part 10 file in ``target``. SOP Instance UID kept (same instance, another encoding)."""
    with codec_errors(target):
        return _transcode_instance(data, target)


def _transcode_instance(data: bytes, target: str) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    source = str(ds.file_meta.get("TransferSyntaxUID", EXPLICIT_VR_LITTLE_ENDIAN))
    has_pixels = "PixelData" in ds
    if has_pixels:
        check_pixel_budget(_attributes_of(ds), "transcode")
    if target == EXPLICIT_VR_LITTLE_ENDIAN:
        if source not in NATIVE and has_pixels:
            ds.decompress(generate_instance_uid=False)
        elif source == EXPLICIT_VR_BIG_ENDIAN and has_pixels:
            arr = ds.pixel_array
            ds.PixelData = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
            if "PlanarConfiguration" in ds:
                ds.PlanarConfiguration = 0
        ds.file_meta.TransferSyntaxUID = UID(EXPLICIT_VR_LITTLE_ENDIAN)
        ds.set_original_encoding(False, True)
    else:
        if source in (EXPLICIT_VR_BIG_ENDIAN, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN):
            arr = ds.pixel_array
            ds.file_meta.TransferSyntaxUID = UID(EXPLICIT_VR_LITTLE_ENDIAN)
            ds.set_original_encoding(False, True)
            ds.compress(UID(target), arr, generate_instance_uid=False)
        else:
            ds.compress(UID(target), generate_instance_uid=False)
    for _ in ds.iterall():
        pass  # converts raw elements, giving implicit VR ones their dictionary VR before an explicit write
    out = io.BytesIO()
    ds.preamble = bytes(128)
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def _attributes_of(ds: Dataset) -> PixelAttributes:
    return PixelAttributes(
        rows=int(ds.get("Rows", 0)),
        columns=int(ds.get("Columns", 0)),
        samples_per_pixel=int(ds.get("SamplesPerPixel", 1)),
        bits_allocated=int(ds.get("BitsAllocated", 8)),
        bits_stored=int(ds.get("BitsStored", 8)),
        high_bit=int(ds.get("HighBit", 7)),
        pixel_representation=int(ds.get("PixelRepresentation", 0)),
        photometric_interpretation=str(ds.get("PhotometricInterpretation", "MONOCHROME2")),
        planar_configuration=int(ds.get("PlanarConfiguration", 0)),
    )
