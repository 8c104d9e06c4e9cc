"""`python -m bench.frames`: frame latency, bytes read per frame, rendered JPEG latency, transcoding.

Starts its own PostgreSQL and Azurite (loopback) and runs the service **in this process** (uvicorn on
a thread, real HTTP on loopback) so that the storage adapter's counters (`AzureBlobStore.counters`)
can be read around each request: "bytes read per frame request" is their delta, divided by the number
of requests. Prints one table and writes `.bench/frames.json`. Not part of `make test`.

Scenarios (sizes are flags):
- frame 1, the middle frame and the last frame of a ~1 GiB native multi-frame instance (512x512,
  16-bit: 512 KiB per frame) and of a 2 MiB one: p50/p95 latency and bytes read per request;
- `/rendered` JPEG of a 512x512 16-bit CT frame: p50/p95;
- instance retrieve JPEG 2000 lossless -> Explicit VR Little Endian: decoded MB/s and frames/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless
from tests.factories import make_dataset, to_bytes

from dicomlake.app import create_app
from dicomlake.config import DatabaseSettings, Settings, StorageSettings
from dicomlake.devstack.azurite import LocalAzurite
from dicomlake.devstack.ports import free_port
from dicomlake.devstack.postgres import LocalPostgres, ensure_database

ROOT = Path(__file__).resolve().parents[1]
FRAME_BYTES = 512 * 512 * 2
AS_STORED = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


class InProcessService:
    """The app on uvicorn in a background thread; ``deps`` captured from the first request's state."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.deps: Any = None
        app = create_app(settings)

        async def capture(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and self.deps is None:
                self.deps = scope.get("state", {}).get("deps")
            await app(scope, receive, send)

        config = uvicorn.Config(capture, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the service did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    @property
    def bytes_read(self) -> int:
        return int(self.deps.blobs.counters.bytes_read) if self.deps is not None else 0


def write_native(path: Path, frames: int) -> tuple[str, str, str]:
    """A native 512x512 16-bit multi-frame file written in pieces (never whole in memory)."""
    ds = make_dataset(rows=512, columns=512, frames=1)
    ds.NumberOfFrames = frames
    ds.PixelData = b""
    header = to_bytes(ds)
    tag = b"\xe0\x7f\x10\x00OW\x00\x00"
    assert header.endswith(tag + b"\x00\x00\x00\x00")
    with path.open("wb") as f:
        f.write(header[:-4] + (frames * FRAME_BYTES).to_bytes(4, "little"))
        for i in range(frames):
            f.write(np.full(512 * 512, i % 4096, dtype="<u2").tobytes() if i % 64 else os.urandom(FRAME_BYTES))
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


async def stow_file(client: httpx.AsyncClient, base: str, path: Path) -> None:
    async def body() -> AsyncIterator[bytes]:
        with path.open("rb") as f:
            while chunk := f.read(4 * 1024 * 1024):
                yield chunk

    response = await client.post(f"{base}/v2/studies", content=body(), headers={"Content-Type": "application/dicom"})
    assert response.status_code == 200, response.text


def percentiles(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p95 * 1000


async def frame_latency(
    client: httpx.AsyncClient, service: InProcessService, url: str, frames: int, label: str, repeat: int
) -> dict[str, float]:
    results: dict[str, float] = {}
    for name, number in (("first", 1), ("middle", (frames + 1) // 2), ("last", frames)):
        times: list[float] = []
        before = service.bytes_read
        for _ in range(repeat):
            started = time.perf_counter()
            response = await client.get(f"{url}/frames/{number}", headers={"Accept": AS_STORED})
            times.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
        p50, p95 = percentiles(times)
        results[f"{label}_frame_{name}_p50_ms"] = p50
        results[f"{label}_frame_{name}_p95_ms"] = p95
        results[f"{label}_frame_{name}_bytes_read_per_request"] = (service.bytes_read - before) / repeat
    results[f"{label}_frame_bytes"] = FRAME_BYTES
    return results


async def rendered_latency(client: httpx.AsyncClient, base: str, repeat: int) -> dict[str, float]:
    ds = make_dataset(rows=512, columns=512)
    yy, xx = np.mgrid[0:512, 0:512]
    ds.PixelData = ((xx * 4 + yy * 3) % 4096).astype("<u2").tobytes()
    ds.WindowCenter, ds.WindowWidth = 1024, 2048
    response = await client.post(
        f"{base}/v2/studies", content=to_bytes(ds), headers={"Content-Type": "application/dicom"}
    )
    assert response.status_code == 200, response.text
    url = f"{base}/v2/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = await client.get(url + "/rendered", headers={"Accept": "image/jpeg"})
        times.append(time.perf_counter() - started)
        assert response.status_code == 200
    p50, p95 = percentiles(times)
    return {"rendered_jpeg_512_p50_ms": p50, "rendered_jpeg_512_p95_ms": p95}


async def transcode_throughput(client: httpx.AsyncClient, base: str, frames: int, repeat: int) -> dict[str, float]:
    ds = make_dataset(rows=512, columns=512, frames=frames)
    yy, xx = np.mgrid[0:512, 0:512]
    rng = np.random.default_rng(1)
    stack = np.stack([((xx + yy + 16 * i) % 4096) + rng.integers(0, 8, (512, 512)) for i in range(frames)])
    ds.PixelData = stack.astype("<u2").tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg", generate_instance_uid=False)
    response = await client.post(
        f"{base}/v2/studies",
        content=to_bytes(ds, transfer_syntax=JPEG2000Lossless),
        headers={"Content-Type": "application/dicom"},
    )
    assert response.status_code == 200, response.text
    url = f"{base}/v2/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    started = time.perf_counter()
    for _ in range(repeat):
        response = await client.get(url, headers={"Accept": "application/dicom"})
        assert response.status_code == 200
    elapsed = time.perf_counter() - started
    decoded_mb = frames * FRAME_BYTES * repeat / 1e6
    return {
        "transcode_j2k_to_le_mb_per_s": decoded_mb / elapsed,
        "transcode_j2k_to_le_frames_per_s": frames * repeat / elapsed,
    }


async def main_async(args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="dicomlake-bench-frames-") as tmpdir:
        tmp = Path(tmpdir)
        pg = LocalPostgres(tmp / "pg", free_port(), durable=False)
        pg.start()
        azurite = LocalAzurite(ROOT, free_port(), location=tmp / "azurite")
        azurite.start()
        service: InProcessService | None = None
        try:
            await ensure_database(pg.admin_dsn, "dicomlake")
            settings = Settings(
                storage=StorageSettings(
                    container="bench", connection_string=azurite.connection_string, create_container=True
                ),
                database=DatabaseSettings(url=pg.dsn("dicomlake"), pool_max=8),
            )
            service = InProcessService(settings)
            service.start()
            base = service.base_url
            results: dict[str, float] = {}
            async with httpx.AsyncClient(timeout=3600) as client:
                for label, size_mb in (("small", 2), ("large", args.large_mb)):
                    frames = max(1, size_mb * 1024 * 1024 // FRAME_BYTES)
                    path = tmp / f"{label}.dcm"
                    study, series, sop = write_native(path, frames)
                    print(f"storing the {label} instance ({frames} frames) ...", flush=True)
                    await stow_file(client, base, path)
                    path.unlink()
                    url = f"{base}/v2/studies/{study}/series/{series}/instances/{sop}"
                    await client.get(f"{url}/frames/1", headers={"Accept": AS_STORED})  # warm the pool
                    results |= await frame_latency(client, service, url, frames, label, args.repeat)
                print("rendered and transcoding ...", flush=True)
                results |= await rendered_latency(client, base, args.repeat)
                results |= await transcode_throughput(client, base, args.transcode_frames, 3)
            results["large_vs_small_first_frame_p50_ratio"] = (
                results["large_frame_first_p50_ms"] / results["small_frame_first_p50_ms"]
            )
            return results
        finally:
            if service is not None:
                service.stop()
            azurite.stop()
            pg.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--large-mb", type=int, default=1024, help="size of the large instance (default 1024)")
    parser.add_argument("--repeat", type=int, default=50, help="requests per measured frame (default 50)")
    parser.add_argument("--transcode-frames", type=int, default=16, help="frames of the JPEG 2000 instance")
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value:12.2f}")
    out = ROOT / ".bench"
    out.mkdir(exist_ok=True)
    (out / "frames.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
