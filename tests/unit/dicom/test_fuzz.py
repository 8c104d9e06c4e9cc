"""Corrupted files: the only outcome is a header or an InvalidInstanceError, never another exception."""

from __future__ import annotations

import random

import pytest

from dicomlake.errors import InvalidInstanceError
from tests.unit.dicom.helpers import SAMPLES, read

SPLICES = [b"\xff\xff\xff\xff", b"\xfe\xff\x00\xe0", b"\xfe\xff\xdd\xe0", b"SQ\x00\x00", b"UN\x00\x00", b"\x00\x00"]


def _mutate(data: bytes, rng: random.Random) -> bytes:
    mutated = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        at = rng.randrange(len(mutated))
        choice = rng.random()
        if choice < 0.6:
            mutated[at] = rng.randrange(256)
        elif choice < 0.85:
            mutated[at : at + 4] = rng.choice(SPLICES)
        else:
            del mutated[at : at + rng.randint(1, 40)]
    return bytes(mutated)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom complains about the values it converts
@pytest.mark.parametrize("name", ["layer1.dcm", "DeflatedExplicitVRLittleEndian.dcm"])
def test_mutations_fail_cleanly(name: str) -> None:
    original = SAMPLES.joinpath(name).read_bytes()
    rng = random.Random(name)
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(300):
        try:
            read(_mutate(original, rng))
            outcomes["ok"] += 1
        except InvalidInstanceError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0
