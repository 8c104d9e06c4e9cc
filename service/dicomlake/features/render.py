"""Rendered images and thumbnails: read one frame by range, decode and render off the event loop.

Thumbnails (JPEG, default parameters) are cached in the lake next to the instance file
(`LakeLayout.thumbnail_blob`): the first request renders and uploads, later ones are one blob read.
The name carries the instance version, so a replaced instance never serves a stale thumbnail.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import numpy as np

from dicomlake.dicom.frames import parse_frame_list
from dicomlake.dicom.render import JPEG, RenderOptions, Voi, render_array
from dicomlake.dicom.transcode import PixelAttributes, check_pixel_budget, codec_errors, decode_frame
from dicomlake.errors import BadRequestError, BlobNotFoundError, DicomWebError, NotAcceptableError, NotFoundError
from dicomlake.features.frames import frame_source, frame_syntax, read_frame, run_cpu
from dicomlake.features.retrieve import open_instance
from dicomlake.index.instances import StoredInstance, instance_metadata
from dicomlake.storage.blob_store import AzureBlobStore
from dicomlake.storage.paths import LakeLayout

logger = logging.getLogger(__name__)

_PALETTE_DESCRIPTORS = ("00281101", "00281102", "00281103")
_PALETTE_DATA = ("00281201", "00281202", "00281203")


def frame_number(text: str, number_of_frames: int) -> int:
    """The one frame of a frame-level rendered/thumbnail path (400 malformed or several, 404 absent)."""
    try:
        numbers = parse_frame_list(text, number_of_frames)
    except LookupError as e:
        raise NotFoundError(f"{e.args[0]}.", code="FrameNotFound") from e
    except ValueError as e:
        raise BadRequestError(f"Invalid frame list: {e.args[0]}.", code="InvalidFrameNumber") from e
    if len(numbers) != 1:
        raise BadRequestError("Rendered frames are served one at a time: name one frame.", code="InvalidFrameNumber")
    return numbers[0]


async def render(
    pool: asyncpg.Pool,
    blobs: AzureBlobStore,
    instance: StoredInstance,
    options: RenderOptions,
    *,
    frame: str | None = None,
    thumbnail: bool = False,
) -> bytes:
    """Frame ``frame`` (a path segment; default the first) of ``instance`` rendered per ``options``."""
    source = await frame_source(pool, blobs, instance)
    number = frame_number(frame, source.number_of_frames) if frame is not None else 1
    metadata = await instance_metadata(pool, instance.watermark)
    attrs = PixelAttributes.from_metadata(metadata)
    check_pixel_budget(attrs, "render")
    data = await read_frame(blobs, source, number)
    palette = await _palette(blobs, instance, metadata) if attrs.photometric_interpretation == "PALETTE COLOR" else None
    voi = Voi.from_metadata(metadata)
    if options.window is None:
        voi = await _with_voi_lut(blobs, instance, metadata, voi)
    return await run_cpu(_render, data, attrs, frame_syntax(source), voi, options, palette, thumbnail)


def _render(
    data: bytes,
    attrs: PixelAttributes,
    syntax: str,
    voi: Voi,
    options: RenderOptions,
    palette: Any,
    thumbnail: bool,
) -> bytes:
    with codec_errors("a rendered image"):
        arr: np.ndarray = decode_frame(data, attrs, syntax)
        try:
            return render_array(
                arr,
                photometric=attrs.photometric_interpretation,
                bits_stored=attrs.bits_stored,
                voi=voi,
                options=options,
                palette=palette,
                thumbnail=thumbnail,
            )
        except ValueError as e:
            raise BadRequestError(str(e), code="InvalidRenderParameter") from e


VOI_LUT_SEQUENCE = "00283010"
LUT_DESCRIPTOR = "00283002"
LUT_DATA = "00283006"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"


async def _with_voi_lut(blobs: AzureBlobStore, instance: StoredInstance, metadata: dict[str, Any], voi: Voi) -> Voi:
    """Add the data set's first VOI LUT (VOI LUT Sequence item 1): descriptor from the metadata, the
    table inline or (as bulk data) by one ranged read of the stored file."""
    items = metadata.get(VOI_LUT_SEQUENCE, {}).get("Value") or []
    item = items[0] if items else None
    if not item:
        return voi
    descriptor = item.get(LUT_DESCRIPTOR, {}).get("Value")
    data_attr = item.get(LUT_DATA, {})
    if not descriptor or len(descriptor) < 3:
        return voi
    if "Value" in data_attr:  # US values inline
        import numpy as np

        table = np.asarray(data_attr["Value"], dtype="<u2").tobytes()
        return voi.with_lut(descriptor, table)
    location = instance.bulk.get(f"{VOI_LUT_SEQUENCE}/0/{LUT_DATA}")
    if location is None or location[0] is None or not location[1]:
        return voi  # not addressable (deflated file): fall back to the window
    download = await open_instance(blobs, instance, offset=location[0], length=location[1])
    big_endian = instance.transfer_syntax_uid == EXPLICIT_VR_BIG_ENDIAN
    return voi.with_lut(descriptor, await download.read_all(), big_endian=big_endian)


async def _palette(blobs: AzureBlobStore, instance: StoredInstance, metadata: dict[str, Any]) -> Any:
    """The palette LUTs of a PALETTE COLOR image: descriptors from metadata, data by ranged reads."""
    from pydicom.dataset import Dataset

    ds = Dataset()
    keywords = ("RedPaletteColorLookupTable", "GreenPaletteColorLookupTable", "BluePaletteColorLookupTable")
    for keyword, descriptor_tag, data_tag in zip(keywords, _PALETTE_DESCRIPTORS, _PALETTE_DATA, strict=True):
        descriptor = metadata.get(descriptor_tag, {}).get("Value")
        location = instance.bulk.get(data_tag)
        inline = metadata.get(data_tag, {}).get("InlineBinary")
        if not descriptor or (location is None and inline is None):
            raise NotAcceptableError(
                "This PALETTE COLOR image has no (non-segmented) palette this server can apply.",
                code="PaletteNotSupported",
            )
        setattr(ds, keyword + "Descriptor", [int(v) for v in descriptor])
        if location is not None and location[0] is not None and location[1]:
            download = await open_instance(blobs, instance, offset=location[0], length=location[1])
            value = await download.read_all()
        else:
            import base64

            value = base64.b64decode(inline or "")
        setattr(ds, keyword + "Data", value)
    return ds


async def cached_thumbnail(
    pool: asyncpg.Pool, blobs: AzureBlobStore, instance: StoredInstance, options: RenderOptions
) -> bytes:
    """The instance's thumbnail; JPEG with default parameters is cached in the lake."""
    if not (options.media_type == JPEG and options.is_default):
        return await render(pool, blobs, instance, options, thumbnail=True)
    name = LakeLayout.thumbnail_blob(instance.blob_name)
    try:
        return await blobs.read_bytes(name)
    except BlobNotFoundError:
        pass
    image = await render(pool, blobs, instance, options, thumbnail=True)
    try:
        await blobs.upload_bytes(name, image, content_type=JPEG)
    except DicomWebError as e:  # the thumbnail is still served; the next request renders again
        logger.warning("could not cache a thumbnail", extra={"code": e.code})
    return image


def representative(instances: list[StoredInstance]) -> StoredInstance:
    """The instance whose thumbnail stands for a study or series: the middle one with pixel data."""
    with_pixels = [i for i in instances if i.pixel_data]
    if not with_pixels:
        raise NotFoundError("No instance here has pixel data.", code="PixelDataNotFound")
    return with_pixels[len(with_pixels) // 2]
