"""Hostile uploads are refused per instance (FailedSOPSequence), nothing is stored, the server stays up."""

from __future__ import annotations

import struct
import zlib

import httpx
import pytest

from tests.api.test_stow import failed_reasons, stow
from tests.factories import instance_bytes

pytestmark = pytest.mark.integration


def _meta(transfer_syntax: bytes) -> bytes:
    """A File Meta group (Explicit VR LE) for the given transfer syntax."""
    ts = transfer_syntax + (b"\x00" if len(transfer_syntax) % 2 else b"")
    elements = b"\x02\x00\x10\x00UI" + struct.pack("<H", len(ts)) + ts
    group_length = b"\x02\x00\x00\x00UL" + struct.pack("<HI", 4, len(elements))
    return bytes(128) + b"DICM" + group_length + elements


def deflate_bomb(inflated_bytes: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = b"\x00" * (1024 * 1024)
    body = b"".join(compressor.compress(block) for _ in range(inflated_bytes // len(block)))
    return _meta(b"1.2.840.10008.1.2.1.99") + body + compressor.flush()


def huge_length() -> bytes:
    # PatientName (0010,0010) claiming a 4 GB value in a tiny file.
    return _meta(b"1.2.840.10008.1.2.1") + b"\x10\x00\x10\x00PN" + struct.pack("<H", 0xFFFF) + b"x" * 100


def deep_sequences(depth: int) -> bytes:
    item = b""
    for _ in range(depth):
        sq = b"\x08\x00\x15\x11SQ\x00\x00\xff\xff\xff\xff"  # (0008,1115) SQ, undefined length
        sq += b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + item + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
        sq += b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
        item = sq
    return _meta(b"1.2.840.10008.1.2.1") + item


@pytest.mark.parametrize(
    "payload",
    [deflate_bomb(600 * 1024 * 1024), huge_length(), deep_sequences(200)],
    ids=["deflate-bomb-600MB", "4GB-length", "200-nested-sequences"],
)
async def test_hostile_part_is_refused_and_server_stays_up(client: httpx.AsyncClient, payload: bytes) -> None:
    assert len(payload) < 2 * 1024 * 1024
    good = instance_bytes()
    response = await stow(client, [payload, good])
    assert response.status_code == 202, response.text
    assert len(failed_reasons(response)) == 1
    assert failed_reasons(response)[0] in (0xA900, 0xC000)
    assert (await client.get("/health/ready")).status_code == 200
