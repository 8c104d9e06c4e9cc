"""Soak: mixed STOW / WADO / QIDO / metadata load against one service process for a bounded time.

``python -m bench.soak [--minutes 15] [--concurrency 4] [--max-requests N]``

Starts its own PostgreSQL, Azurite (on disk) and service process on loopback; this process is the
load generator (the "second process"). Every interval it records throughput, error rate and the
server's RSS; at the end it prints a table and writes ``.bench/soak.json``. Mix per worker iteration:
one STOW of 2 small CT-like instances, two WADO instance retrieves, one metadata and one QIDO search.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from tests.factories import instance_bytes, multipart, new_uid

from bench.stack import bench_stack

ROOT = Path(__file__).resolve().parents[1]
JSON = {"Accept": "application/dicom+json"}


@dataclass
class Window:
    requests: int = 0
    errors: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)


#: Stores (of 2 instances) per study before a worker moves on to a new study.
STUDY_SIZE = 25


async def worker(base: str, stop: float, budget: list[int], stats: list[Window], seed: int) -> None:
    rng = random.Random(seed)
    stored: list[str] = []
    study = new_uid()
    iteration = 0
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        while time.monotonic() < stop and budget[0] > 0:
            # A new study every STUDY_SIZE stores keeps the workload stationary: a study that grew for
            # the whole run would make its metadata and search answers grow with it.
            iteration += 1
            if iteration % STUDY_SIZE == 0:
                study = new_uid()
            series = new_uid()
            parts = [instance_bytes(study=study, series=series, rows=128, columns=128) for _ in range(2)]
            body, content_type = multipart(parts)
            ops: list[tuple[str, str, str, dict[str, str], bytes | None]] = [
                ("stow", "POST", "/v2/studies", {"Content-Type": content_type, **JSON}, body)
            ]
            for url in rng.sample(stored, min(2, len(stored))):
                ops.append(("wado", "GET", url, {"Accept": "application/dicom; transfer-syntax=*"}, None))
            ops.append(("metadata", "GET", f"/v2/studies/{study}/metadata", JSON, None))
            ops.append(("qido", "GET", f"/v2/studies?StudyInstanceUID={study}&includefield=all", JSON, None))
            for kind, method, url, headers, content in ops:
                budget[0] -= 1
                t0 = time.monotonic()
                window = stats[-1]
                try:
                    r = await client.request(method, url, headers=headers, content=content)
                    ok = r.status_code < 400
                    if kind == "stow" and ok:
                        stored.extend(
                            "/v2" + i["00081190"]["Value"][0].split("/v2", 1)[1] for i in r.json()["00081199"]["Value"]
                        )
                        stored = stored[-200:]
                except httpx.HTTPError:
                    ok = False
                window.requests += 1
                window.errors += 0 if ok else 1
                window.by_kind[kind] = window.by_kind.get(kind, 0) + 1
                window.latencies.append(time.monotonic() - t0)


async def run(args: argparse.Namespace) -> dict[str, object]:
    async with bench_stack("dicomlake-soak-") as stack:
        service = stack.service
        assert service.process is not None
        server = psutil.Process(service.process.pid)
        rows: list[dict[str, float]] = []
        tasks: list[asyncio.Task[None]] = []
        try:
            began = time.monotonic()
            stop = began + args.minutes * 60
            budget = [args.max_requests]
            stats = [Window()]
            tasks += [
                asyncio.create_task(worker(service.base_url, stop, budget, stats, seed))
                for seed in range(args.concurrency)
            ]
            while not all(t.done() for t in tasks):
                await asyncio.wait(tasks, timeout=args.interval)
                window = stats[-1]
                stats.append(Window())
                lat = sorted(window.latencies) or [0.0]
                row = {
                    "t_s": round(time.monotonic() - began),
                    "req_per_s": round(window.requests / args.interval, 1),
                    "error_rate": round(window.errors / window.requests, 4) if window.requests else 0.0,
                    "p50_ms": round(1000 * lat[len(lat) // 2], 1),
                    "p95_ms": round(1000 * lat[int(len(lat) * 0.95)], 1),
                    "rss_mib": round(server.memory_info().rss / 2**20, 1),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
            for t in tasks:
                t.result()
        finally:
            for t in tasks:
                t.cancel()
    total = sum(r["req_per_s"] * args.interval for r in rows)
    errors = sum(r["error_rate"] * r["req_per_s"] * args.interval for r in rows)
    steady = rows[len(rows) // 4 :] or rows
    return {
        "minutes": args.minutes,
        "concurrency": args.concurrency,
        "requests": round(total),
        "error_rate": round(errors / total, 5) if total else 0.0,
        "rss_mib_first_quarter_end": steady[0]["rss_mib"],
        "rss_mib_end": rows[-1]["rss_mib"] if rows else 0.0,
        "rss_mib_max": max((r["rss_mib"] for r in rows), default=0.0),
        "windows": rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=15.0, help="how long to run (default 15)")
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent client workers (default 4)")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="stop after this many requests")
    parser.add_argument("--interval", type=float, default=15.0, help="seconds per reported window")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    out = ROOT / ".bench" / "soak.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    summary = {k: v for k, v in result.items() if k != "windows"}
    print(json.dumps(summary, indent=2))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
