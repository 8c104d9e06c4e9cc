"""`make bench-qido` (`python -m bench.qido`): QIDO-RS latency on a small and a large index.

Starts its own PostgreSQL, Azurite and service process (loopback only). Seeds the index through its own
bulk path (`dicomlake.index.search.bulk_load`: COPY of committed rows, the search triggers refresh the
study and series tables set-based), 20 instances per study in 4 series, first `--small` instances,
measures, then grows to `--large` and measures again. Prints p50/p95 per scenario and the large/small
ratio, and writes `.bench/qido.json`. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from typing import Any

import asyncpg
import httpx

from bench.stack import ROOT, bench_stack
from dicomlake.index.search import bulk_load

PER_STUDY = 20
SERIES_PER_STUDY = 4
MODALITIES = ("CT", "MR", "US", "CR", "DX", "PT", "NM", "MG")
_SYLLABLES = ("an", "ber", "cor", "dal", "el", "fin", "gar", "hol", "is", "jor", "kan", "lin", "mar", "nor", "ol",
              "per", "quin", "ros", "sal", "tor", "ul", "van", "wes", "yan", "zel", "mü", "ñe", "šo")  # fmt: skip


def surname(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))).capitalize()


def study_rows(index: int, rng: random.Random) -> list[tuple[str, str, str, str, dict[str, Any]]]:
    study = f"1.2.826.0.1.3680043.10.1.{index}"
    patient = f"PAT{index // 2:08d}"
    name = f"{surname(rng)}^{surname(rng)}"
    date = f"{2010 + index % 15}{(index // 15) % 12 + 1:02d}{(index // 180) % 28 + 1:02d}"
    modalities = rng.sample(MODALITIES, 2)
    rows = []
    for se in range(SERIES_PER_STUDY):
        series = f"{study}.{se + 1}"
        for n in range(PER_STUDY // SERIES_PER_STUDY):
            meta = {
                "00080016": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]},
                "00080018": {"vr": "UI", "Value": [f"{series}.{n + 1}"]},
                "00080020": {"vr": "DA", "Value": [date]},
                "00080030": {"vr": "TM", "Value": [f"{8 + index % 10:02d}3000"]},
                "00080050": {"vr": "SH", "Value": [f"ACC{index:09d}"]},
                "00080060": {"vr": "CS", "Value": [modalities[se % 2]]},
                "00080090": {"vr": "PN", "Value": [{"Alphabetic": "Referrer^Doctor"}]},
                "00081030": {"vr": "LO", "Value": ["Routine study"]},
                "0008103E": {"vr": "LO", "Value": [f"Series {se + 1}"]},
                "00100010": {"vr": "PN", "Value": [{"Alphabetic": name}]},
                "00100020": {"vr": "LO", "Value": [patient]},
                "00100030": {"vr": "DA", "Value": ["19700101"]},
                "00100040": {"vr": "CS", "Value": [rng.choice("MF")]},
                "0020000D": {"vr": "UI", "Value": [study]},
                "0020000E": {"vr": "UI", "Value": [series]},
                "00200010": {"vr": "SH", "Value": [str(index)]},
                "00200011": {"vr": "IS", "Value": [se + 1]},
                "00200013": {"vr": "IS", "Value": [n + 1]},
                "00280010": {"vr": "US", "Value": [512]},
                "00280011": {"vr": "US", "Value": [512]},
            }
            rows.append((study, series, f"{series}.{n + 1}", "1.2.840.10008.5.1.4.1.1.2", meta))
    return rows


async def seed(dsn: str, start_study: int, end_study: int, names: dict[int, str]) -> float:
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        batch = 1000
        for first in range(start_study, end_study, batch):
            rows = []
            for i in range(first, min(first + batch, end_study)):
                r = study_rows(i, random.Random(i))
                names[i] = r[0][4]["00100010"]["Value"][0]["Alphabetic"]
                rows += r
            async with conn.transaction():
                await bulk_load(conn, 1, rows)
            print(f"  seeded {min(first + batch, end_study) * PER_STUDY:,} instances", end="\r", flush=True)
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    print()
    return time.perf_counter() - started


def scenarios(studies: int, names: dict[int, str], rng: random.Random) -> dict[str, list[str]]:
    picks = [rng.randrange(studies) for _ in range(200)]
    out: dict[str, list[str]] = {
        "study by PatientID": [f"/v2/studies?PatientID=PAT{i // 2:08d}" for i in picks],
        "study by AccessionNumber": [f"/v2/studies?AccessionNumber=ACC{i:09d}" for i in picks],
        "study by StudyInstanceUID": [f"/v2/studies?StudyInstanceUID=1.2.826.0.1.3680043.10.1.{i}" for i in picks],
        "study by PatientName wildcard": [f"/v2/studies?PatientName={names[i].split('^')[0][:5]}*" for i in picks],
        "study by StudyDate range + ModalitiesInStudy": [
            f"/v2/studies?StudyDate={2010 + i % 15}0101-{2010 + i % 15}0131&ModalitiesInStudy={MODALITIES[i % 8]}"
            for i in picks
        ],
        "series in a study": [f"/v2/studies/1.2.826.0.1.3680043.10.1.{i}/series" for i in picks],
        "instances in a series, limit/offset": [
            f"/v2/studies/1.2.826.0.1.3680043.10.1.{i}/series/1.2.826.0.1.3680043.10.1.{i}.2/instances?limit=2&offset=2"
            for i in picks
        ],
        "fuzzy name search": [
            f"/v2/studies?PatientName={names[i].split('^')[1][:4].lower()}&fuzzymatching=true" for i in picks
        ],
    }
    return out


async def measure(base: str, cases: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        for name, urls in cases.items():
            for url in urls[:10]:  # warm up
                await client.get(url)
            times = []
            counts = []
            for url in urls:
                started = time.perf_counter()
                r = await client.get(url)
                times.append((time.perf_counter() - started) * 1000)
                assert r.status_code == 200, (url, r.status_code, r.text[:200])
                counts.append(len(r.json()))
            times.sort()
            results[name] = {
                "p50_ms": statistics.median(times),
                "p95_ms": times[int(len(times) * 0.95) - 1],
                "mean_results": statistics.mean(counts),
            }
            print(
                f"  {name:<46} p50 {results[name]['p50_ms']:7.1f} ms  p95 {results[name]['p95_ms']:7.1f} ms", flush=True
            )
    return results


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names: dict[int, str] = {}
    async with bench_stack("dicomlake-bench-qido-") as stack:
        dsn, base = stack.postgres.dsn("dicomlake"), stack.service.base_url
        small, large = args.small // PER_STUDY, args.large // PER_STUDY
        print(f"seeding {args.small:,} instances ({small:,} studies) ...", flush=True)
        out["seed_small_s"] = await seed(dsn, 0, small, names)
        print(f"QIDO at {args.small:,} instances:", flush=True)
        out["small"] = await measure(base, scenarios(small, names, random.Random(1)))
        print(f"seeding up to {args.large:,} instances ({large:,} studies) ...", flush=True)
        out["seed_large_s"] = await seed(dsn, small, large, names)
        print(f"QIDO at {args.large:,} instances:", flush=True)
        out["large"] = await measure(base, scenarios(large, names, random.Random(1)))
    out["instances"] = {"small": args.small, "large": args.large}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    args = parser.parse_args()
    out = asyncio.run(main_async(args))
    print(
        f"\n{'scenario':<46} {'p50 small':>10} {'p95 small':>10} {'p50 large':>10} {'p95 large':>10} {'p95 ratio':>9}"
    )
    for name, small in out["small"].items():
        large = out["large"][name]
        ratio = large["p95_ms"] / small["p95_ms"]
        print(
            f"{name:<46} {small['p50_ms']:10.1f} {small['p95_ms']:10.1f} {large['p50_ms']:10.1f} "
            f"{large['p95_ms']:10.1f} {ratio:9.2f}"
        )
    print(f"seeding: {out['seed_small_s']:.0f} s + {out['seed_large_s']:.0f} s")
    target = ROOT / ".bench"
    target.mkdir(exist_ok=True)
    (target / "qido.json").write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
