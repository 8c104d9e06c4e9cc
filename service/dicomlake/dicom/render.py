"""Rendered images (PS3.18 §8.3.5.1, §10.4.1.1.3): one decoded frame to an 8-bit JPEG or PNG (pure).

Grayscale: Modality LUT (Rescale Slope/Intercept), then the VOI window asked for (``window``), else the
data set's first VOI LUT (VOI LUT Sequence, preferred like pydicom's ``apply_voi_lut``), else its first
Window Center/Width (with VOI LUT Function), else the frame's min-max range;
MONOCHROME1 is inverted. Colour: YBR is converted to RGB by the decoder; PALETTE COLOR goes through
its (non-segmented) palette; more than 8 bits per sample is scaled down. ``viewport`` crops the source
region ``sx,sy,sw,sh`` (default all) and scales it to fit ``vw x vh`` keeping its aspect ratio.
Not applied: Presentation States, per-frame functional groups, ICC profiles, annotations.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "JPEG",
    "PNG",
    "RenderOptions",
    "Voi",
    "parse_render_options",
    "render_array",
]

JPEG = "image/jpeg"
PNG = "image/png"
DEFAULT_QUALITY = 90
THUMBNAIL_SIZE = 128
MAX_VIEWPORT = 8192


@dataclass(frozen=True, slots=True)
class RenderOptions:
    media_type: str = JPEG
    quality: int = DEFAULT_QUALITY
    viewport: tuple[int, int, int | None, int | None, int | None, int | None] | None = None
    window: tuple[float, float, str] | None = None

    @property
    def is_default(self) -> bool:
        return self.quality == DEFAULT_QUALITY and self.viewport is None and self.window is None


@dataclass(frozen=True, slots=True)
class Voi:
    """What the data set says about turning stored values into display values."""

    slope: float = 1.0
    intercept: float = 0.0
    center: float | None = None
    width: float | None = None
    function: str = "LINEAR"
    #: The data set's first VOI LUT: (first value mapped, bits per entry, entries).
    lut: tuple[int, int, np.ndarray] | None = None

    def with_lut(self, descriptor: list[int], data: bytes, *, big_endian: bool = False) -> Voi:
        """This VOI with a VOI LUT (descriptor: entries (0 = 65536), first value mapped, bits per entry)."""
        entries, first, bits = (int(v) for v in descriptor[:3])
        entries = entries or 65536
        dtype = np.dtype(">u2" if big_endian else "<u2") if bits > 8 or len(data) >= 2 * entries else np.dtype("u1")
        table = np.frombuffer(data, dtype=dtype)[:entries]
        if table.size == 0:
            return self
        return Voi(self.slope, self.intercept, self.center, self.width, self.function, (first, bits, table))

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> Voi:
        def first(tag: str) -> float | None:
            value = metadata.get(tag, {}).get("Value")
            try:
                return float(value[0]) if value else None
            except (TypeError, ValueError):
                return None

        function = metadata.get("00281056", {}).get("Value")
        slope = first("00281053")
        width = first("00281051")
        return cls(
            slope=slope if slope else 1.0,
            intercept=first("00281052") or 0.0,
            center=first("00281050"),
            width=width if width is not None and width > 0 else None,
            function=str(function[0]).upper() if function else "LINEAR",
        )


def parse_render_options(query: Mapping[str, str], media_type: str) -> RenderOptions:
    """``quality``, ``viewport`` and ``window`` query parameters; ValueError names what is wrong."""
    quality = DEFAULT_QUALITY
    if "quality" in query:
        try:
            quality = int(query["quality"])
        except ValueError:
            raise ValueError("quality must be an integer from 1 to 100") from None
        if not 1 <= quality <= 100:
            raise ValueError("quality must be an integer from 1 to 100")
    viewport = None
    if "viewport" in query:
        pieces = [p.strip() for p in query["viewport"].split(",")]
        if len(pieces) not in (2, 6):
            raise ValueError("viewport is vw,vh or vw,vh,sx,sy,sw,sh")
        try:
            numbers = [int(p) if p else None for p in pieces]
        except ValueError:
            raise ValueError("viewport values must be integers") from None
        vw, vh = numbers[0], numbers[1]
        if vw is None or vh is None or not (0 < vw <= MAX_VIEWPORT and 0 < vh <= MAX_VIEWPORT):
            raise ValueError(f"viewport width and height must be 1-{MAX_VIEWPORT}")
        rest = numbers[2:] if len(numbers) == 6 else [None, None, None, None]
        if any(v is not None and v < 0 for v in rest[:2]) or any(v is not None and v <= 0 for v in rest[2:]):
            raise ValueError("viewport source region must be non-negative with a positive size")
        viewport = (vw, vh, rest[0], rest[1], rest[2], rest[3])
    window = None
    if "window" in query:
        pieces = [p.strip() for p in query["window"].split(",")]
        if len(pieces) not in (2, 3):
            raise ValueError("window is center,width[,function]")
        try:
            center, width = float(pieces[0]), float(pieces[1])
        except ValueError:
            raise ValueError("window center and width must be numbers") from None
        if not (math.isfinite(center) and math.isfinite(width)) or width <= 0:
            raise ValueError("window width must be positive")
        function = pieces[2].upper() if len(pieces) == 3 and pieces[2] else "LINEAR"
        if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
            raise ValueError("window function is linear, linear_exact or sigmoid")
        window = (center, width, function)
    return RenderOptions(media_type, quality, viewport, window)


def _window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """PS3.3 C.11.2.1.2 / C.11.2.1.3.2 to 0..255."""
    if function == "SIGMOID":
        return 255.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip((values - center) / width + 0.5, 0.0, 1.0) * 255.0
    if width <= 1:
        return np.where(values < center - 0.5, 0.0, 255.0)
    return np.clip(((values - (center - 0.5)) / (width - 1) + 0.5), 0.0, 1.0) * 255.0


def _grayscale(arr: np.ndarray, photometric: str, voi: Voi, window: tuple[float, float, str] | None) -> np.ndarray:
    values = arr.astype(np.float64) * voi.slope + voi.intercept
    if window is not None:
        out = _window(values, *window)
    elif voi.lut is not None:
        first, bits, table = voi.lut
        index = np.clip(np.rint(values) - first, 0, table.size - 1).astype(np.int64)
        top = float(max(int(table.max()), (1 << max(1, min(bits, 16))) - 1))
        out = table[index].astype(np.float64) * (255.0 / top)
    elif voi.center is not None and voi.width is not None:
        out = _window(values, voi.center, voi.width, voi.function)
    else:
        low, high = float(values.min()), float(values.max())
        out = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    if photometric == "MONOCHROME1":
        out = 255.0 - out
    result: np.ndarray = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return result


def _colour(arr: np.ndarray, bits_stored: int) -> np.ndarray:
    if arr.dtype == np.uint8:
        return np.asarray(arr, dtype=np.uint8)
    top = float((1 << max(1, bits_stored)) - 1)
    return np.clip(np.rint(arr.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)


def render_array(
    arr: np.ndarray,
    *,
    photometric: str,
    bits_stored: int,
    voi: Voi,
    options: RenderOptions,
    palette: Any | None = None,
    thumbnail: bool = False,
) -> bytes:
    """Encode one decoded frame (as `dicom.transcode.decode_frame` returns it) as ``options.media_type``.

    ``palette``: a pydicom Dataset holding the palette LUT descriptors and data (PALETTE COLOR).
    """
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut  # type: ignore[attr-defined]

        rgb = apply_color_lut(arr, palette)
        pixels = _colour(rgb, int(palette.RedPaletteColorLookupTableDescriptor[2]) if palette is not None else 8)
    elif arr.ndim == 3:
        pixels = _colour(arr, bits_stored)
    else:
        pixels = _grayscale(arr, photometric, voi, options.window)
    image = Image.fromarray(pixels, mode="RGB" if pixels.ndim == 3 else "L")
    if options.viewport is not None:
        vw, vh, sx, sy, sw, sh = options.viewport
        left, top = sx or 0, sy or 0
        right = min(image.width, left + (sw or image.width))
        bottom = min(image.height, top + (sh or image.height))
        if left >= right or top >= bottom:
            raise ValueError("the viewport's source region lies outside the image")
        image = image.crop((left, top, right, bottom))
        scale = min(vw / image.width, vh / image.height)
        image = image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.LANCZOS
        )
    elif thumbnail:
        image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if options.media_type == PNG:
        image.save(out, format="PNG")
    else:
        image.save(out, format="JPEG", quality=options.quality)
    return out.getvalue()
