"""Real files: metadata equals pydicom's, bulk offsets are exact, pixel data is described."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from tests.unit.dicom.helpers import SAMPLES, assert_matches_pydicom, read

SAMPLE_FILES = sorted(SAMPLES.glob("*.dcm"))
PYDICOM_FILES = [
    "CT_small.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_implicit.dcm",
    "rtplan.dcm",
    "waveform_ecg.dcm",
    "examples_overlay.dcm",
    "examples_palette.dcm",
    "J2K_pixelrep_mismatch.dcm",
    "SC_rgb_rle_2frame.dcm",
    "image_dfl.dcm",
    "test-SR.dcm",
    "liver_expb_1frame.dcm",
]


def test_the_sample_folder_is_there() -> None:
    assert len(SAMPLE_FILES) >= 12


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_sample_matches_pydicom(path: Path) -> None:
    data = path.read_bytes()
    header = read(data)
    assert_matches_pydicom(header, data)
    assert header.bulk, "every sample has pixel data"


@pytest.mark.parametrize("name", PYDICOM_FILES)
def test_pydicom_test_file_matches_pydicom(name: str) -> None:
    path = get_testdata_file(name, download=False)
    assert path is not None, f"{name} should ship inside the pydicom wheel; reinstall with `make install`"
    with open(str(path), "rb") as f:
        data = f.read()
    assert_matches_pydicom(read(data), data)
