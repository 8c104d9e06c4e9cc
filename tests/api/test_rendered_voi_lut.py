"""Rendering applies the data set's VOI LUT (VOI LUT Sequence) when no window is asked, preferring it
to Window Center/Width as pydicom's apply_voi_lut does; an explicit window still wins."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from tests.api.test_frames import store, url_of
from tests.api.test_rendered import PNG, png_pixels
from tests.factories import make_dataset, to_bytes

pytestmark = pytest.mark.integration


def _with_inverting_lut(ds: Dataset, entries: int = 4096) -> np.ndarray:
    lut = (entries - 1 - np.arange(entries)).astype("<u2")
    item = Dataset()
    item.LUTDescriptor = [entries, 0, 12]
    item.LUTData = lut.tobytes()
    item["LUTData"].VR = "OW"
    ds.VOILUTSequence = Sequence([item])
    ds.WindowCenter = 100  # present too: the LUT is preferred
    ds.WindowWidth = 50
    return lut


async def test_voi_lut_sequence_is_applied(client: httpx.AsyncClient) -> None:
    ds = make_dataset(rows=16, columns=16)
    values = np.random.default_rng(7).integers(0, 4096, size=(16, 16), dtype=np.uint16)
    ds.PixelData = values.astype("<u2").tobytes()
    lut = _with_inverting_lut(ds)
    await store(client, to_bytes(ds))
    response = await client.get(url_of(ds) + "/rendered", headers=PNG)
    assert response.status_code == 200
    expected = np.rint(lut[values].astype(np.float64) * 255.0 / 4095.0).astype(np.uint8)
    assert np.array_equal(png_pixels(response), expected)
    # An explicit window wins over the data set's LUT.
    windowed = await client.get(url_of(ds) + "/rendered?window=2048,4096", headers=PNG)
    assert not np.array_equal(png_pixels(windowed), expected)
