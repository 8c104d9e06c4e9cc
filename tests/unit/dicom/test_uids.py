from __future__ import annotations

import pytest

from dicomlake.dicom.uids import clean_uid, is_valid_uid


@pytest.mark.parametrize("uid", ["0", "1.2", "1.2.840.10008.1.2.1", "1.0.3", "9" * 64, "1." + "2" * 62])
def test_valid(uid: str) -> None:
    assert is_valid_uid(uid)


@pytest.mark.parametrize(
    "uid",
    [
        "",
        "1..2",
        ".1.2",
        "1.2.",
        "1.02.3",
        "01.2",
        "1.2a",
        "1.2 ",
        "1.2\x00",
        "1,2",
        "9" * 65,
        "1.2\n",
        "\uff11.\uff12",
        "\u0661.2",
    ],
)
def test_invalid(uid: str) -> None:
    assert not is_valid_uid(uid)


def test_clean_uid_strips_padding_only() -> None:
    assert clean_uid("1.2.3\x00") == "1.2.3"
    assert clean_uid(" 1.2.3 ") == "1.2.3"
    assert clean_uid("1.2\x003") == "1.2\x003"
