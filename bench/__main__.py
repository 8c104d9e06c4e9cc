"""`make bench`: STOW/WADO throughput against raw Azurite from Python, metadata latency for a large
study, and the server's peak RSS while it stores and retrieves one very large instance.

Starts its own PostgreSQL, Azurite and service process (loopback only), prints one table and writes
`.bench/results.json`. Sizes are flags; the defaults are the issue's (2,000 CT-like 512x512 instances,
a 1 GiB multi-frame instance). Not part of `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import secrets
import statistics
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psutil
import pydicom
from tests.factories import make_dataset, multipart, new_uid, to_bytes
from tests.helpers.server import ServiceProcess

from bench.stack import ROOT, bench_stack
from dicomlake.storage.blob_store import AzureBlobStore

ANY = 'multipart/related; type="application/dicom"; transfer-syntax=*'


class RssSampler:
    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self.baseline = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.05)

    def __enter__(self) -> RssSampler:
        self.baseline = self.process.memory_info().rss
        self.peak = self.baseline
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def mb(n: float) -> float:
    return n / 1024 / 1024


async def _gather_limited(n: int, coros: list) -> list:  # type: ignore[type-arg]
    sem = asyncio.Semaphore(n)

    async def run(c):  # type: ignore[no-untyped-def]
        async with sem:
            return await c

    return await asyncio.gather(*(run(c) for c in coros))


async def stow_wado(base: str, files: list[bytes], concurrency: int) -> dict[str, float]:
    total = sum(len(f) for f in files)
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def store(data: bytes) -> None:
            r = await client.post(f"{base}/v2/studies", content=data, headers={"Content-Type": "application/dicom"})
            assert r.status_code == 200, r.text

        started = time.perf_counter()
        await _gather_limited(concurrency, [store(f) for f in files])
        stow_s = time.perf_counter() - started
    return {"stow_instances_per_s": len(files) / stow_s, "stow_mb_per_s": mb(total) / stow_s}


async def wado(base: str, urls: list[str], total: int, concurrency: int) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def get(url: str) -> None:
            async with client.stream("GET", url, headers={"Accept": "application/dicom; transfer-syntax=*"}) as r:
                assert r.status_code == 200
                async for _ in r.aiter_raw(1024 * 1024):
                    pass

        started = time.perf_counter()
        await _gather_limited(concurrency, [get(u) for u in urls])
        seconds = time.perf_counter() - started
    return {"wado_instances_per_s": len(urls) / seconds, "wado_mb_per_s": mb(total) / seconds}


async def raw_azurite(conn: str, files: list[bytes], concurrency: int) -> dict[str, float]:
    total = sum(len(f) for f in files)
    async with AzureBlobStore.from_connection_string(conn, "raw") as store:
        await store.create_container()
        prefix = secrets.token_hex(4)

        async def chunks(data: bytes) -> AsyncIterator[bytes]:
            for i in range(0, len(data), 1024 * 1024):
                yield data[i : i + 1024 * 1024]

        started = time.perf_counter()
        await _gather_limited(
            concurrency, [store.upload_stream(f"{prefix}/{i}", chunks(f)) for i, f in enumerate(files)]
        )
        up = time.perf_counter() - started

        async def download(i: int) -> None:
            d = await store.open_download(f"{prefix}/{i}")
            async for _ in d.chunks():
                pass

        started = time.perf_counter()
        await _gather_limited(concurrency, [download(i) for i in range(len(files))])
        down = time.perf_counter() - started
    return {"raw_upload_mb_per_s": mb(total) / up, "raw_download_mb_per_s": mb(total) / down}


async def large_instance(base: str, conn: str, service: ServiceProcess, size_mb: int, tmp: Path) -> dict[str, float]:
    frame = 512 * 512 * 2
    frames = max(1, size_mb * 1024 * 1024 // frame)
    ds = make_dataset(rows=512, columns=512, frames=1)
    ds.NumberOfFrames = frames
    ds.PixelData = b""
    header = to_bytes(ds)
    # Write the file to disk in pieces: header with an empty Pixel Data, then fix its length.
    path = tmp / "large.dcm"
    pixel_len = frames * frame
    tag = b"\xe0\x7f\x10\x00OW\x00\x00"
    assert header.endswith(tag + b"\x00\x00\x00\x00")
    with path.open("wb") as f:
        f.write(header[:-4] + pixel_len.to_bytes(4, "little"))
        block = os.urandom(frame)
        for _ in range(frames):
            f.write(block)
    size = path.stat().st_size

    async def body() -> AsyncIterator[bytes]:
        with path.open("rb") as f:
            while chunk := f.read(1024 * 1024):
                yield chunk

    assert service.process is not None
    async with httpx.AsyncClient(timeout=3600) as client:
        with RssSampler(service.process.pid) as rss_store:
            started = time.perf_counter()
            r = await client.post(f"{base}/v2/studies", content=body(), headers={"Content-Type": "application/dicom"})
            store_s = time.perf_counter() - started
        assert r.status_code == 200, r.text
        url = f"{base}/v2/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
        with RssSampler(service.process.pid) as rss_get:
            started = time.perf_counter()
            async with client.stream("GET", url, headers={"Accept": "application/dicom; transfer-syntax=*"}) as resp:
                received = 0
                async for chunk in resp.aiter_raw(1024 * 1024):
                    received += len(chunk)
            get_s = time.perf_counter() - started
        assert received == size
    raw = await raw_azurite(conn, [path.read_bytes()], 1) if size_mb <= 2048 else {}
    return {
        "large_mb": mb(size),
        "large_stow_mb_per_s": mb(size) / store_s,
        "large_wado_mb_per_s": mb(size) / get_s,
        "large_raw_upload_mb_per_s": raw.get("raw_upload_mb_per_s", 0.0),
        "large_raw_download_mb_per_s": raw.get("raw_download_mb_per_s", 0.0),
        "rss_growth_store_mb": mb(rss_store.peak - rss_store.baseline),
        "rss_growth_retrieve_mb": mb(rss_get.peak - rss_get.baseline),
    }


async def metadata_latency(base: str, instances: int) -> dict[str, float]:
    study = new_uid()
    series = new_uid()
    files = [to_bytes(make_dataset(study=study, series=series, rows=8, columns=8)) for _ in range(instances)]
    async with httpx.AsyncClient(timeout=600) as client:
        for i in range(0, len(files), 100):
            body, ct = multipart(files[i : i + 100])
            r = await client.post(f"{base}/v2/studies", content=body, headers={"Content-Type": ct})
            assert r.status_code == 200
        times = []
        for _ in range(10):
            started = time.perf_counter()
            r = await client.get(f"{base}/v2/studies/{study}/metadata")
            times.append(time.perf_counter() - started)
            assert len(r.json()) == instances
    return {
        "metadata_study_instances": instances,
        "metadata_p50_ms": statistics.median(times) * 1000,
        "metadata_max_ms": max(times) * 1000,
    }


async def main_async(args: argparse.Namespace) -> dict[str, float]:
    results: dict[str, float] = {}
    async with bench_stack("dicomlake-bench-") as stack:
        base, azurite, service, tmp = stack.service.base_url, stack.azurite, stack.service, stack.tmp
        if args.only == "large":
            results |= await large_instance(base, azurite.connection_string, service, args.large_mb, tmp)
            return results
        print(f"generating {args.instances} CT-like 512x512 instances ...", flush=True)
        files = [to_bytes(make_dataset(rows=512, columns=512)) for _ in range(args.instances)]
        for c in (1, 8):
            half = files[: len(files) // 2] if c == 1 else files[len(files) // 2 :]
            r = await stow_wado(base, half, c)
            raw = await raw_azurite(azurite.connection_string, half, c)
            results |= {f"c{c}_{k}": v for k, v in (r | raw).items()}
        # WADO over everything stored (URLs from the files)
        urls = []
        for f in files:
            ds = pydicom.dcmread(io.BytesIO(f), stop_before_pixels=True)
            urls.append(
                f"{base}/v2/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
            )
        total = sum(len(f) for f in files)
        for c in (1, 8):
            results |= {f"c{c}_{k}": v for k, v in (await wado(base, urls, total, c)).items()}
        print("metadata latency ...", flush=True)
        results |= await metadata_latency(base, args.metadata_instances)
        print(f"large instance ({args.large_mb} MB) ...", flush=True)
        results |= await large_instance(base, azurite.connection_string, service, args.large_mb, tmp)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--metadata-instances", type=int, default=1000)
    parser.add_argument("--large-mb", type=int, default=1024)
    parser.add_argument("--only", choices=["large"], help="run only the large-instance scenario")
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value:10.1f}")
    out = ROOT / ".bench"
    out.mkdir(exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
