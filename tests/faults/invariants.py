"""The one invariant checker run after every fault scenario.

With the service quiet (no request in flight) and at least one replica running:

1. every acknowledged instance (not deleted since) retrieves byte-identical (archived ones answer 424);
2. every committed index row has its blob, with the recorded size and ETag;
3. after one janitor pass there is no orphan blob and no stale pending row. Pending rows left by killed
   processes would be swept when their 10-minute lease expires; the checker lets that time pass by
   moving their lease into the past (no request is in flight, so every pending row is abandoned);
4. search never shows deleted or half-stored instances: QIDO and metadata of each study show exactly
   the committed instances;
5. no 500 was returned (a 503 must carry Retry-After), and no unhandled error was logged;
6. the change feed has a create/update entry for every committed row and a delete entry for every
   acknowledged delete.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import httpx

from dicomlake.jobs.janitor import Janitor
from tests.faults.harness import ROOT, Stack


@dataclass
class Report:
    acknowledged: int
    lost: int
    committed: int
    orphans_before_janitor: int
    orphans_after_janitor: int
    pending_swept: int

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class InvariantError(AssertionError):
    pass


async def check(stack: Stack, base_url: str, *, expire_pending: bool = True) -> Report:
    problems: list[str] = []
    ledger = stack.ledger
    pool = await asyncpg.create_pool(stack.direct_dsn, min_size=1, max_size=2)
    try:
        async with stack.blob_store() as blobs:

            async def lake() -> set[str]:
                return {b.name async for b in blobs.list_blobs(ROOT) if not b.name.startswith(ROOT + "healthCheck/")}

            rows = await pool.fetch("SELECT blob_name FROM instances WHERE status = 2")
            orphans_before = len((await lake()) - {r["blob_name"] for r in rows})
            if expire_pending:
                await pool.execute(
                    "UPDATE instances SET lease_expires_at = now() - interval '1 second' WHERE status = 1"
                )
            janitor = await Janitor(pool, blobs).run_once()
            pending = await pool.fetchval("SELECT count(*) FROM instances WHERE status = 1")
            if pending:
                problems.append(f"{pending} pending row(s) left after a janitor pass")
            committed = await pool.fetch(
                "SELECT i.watermark, p.name AS partition, study_uid, series_uid, sop_uid, blob_name, size, blob_etag "
                "FROM instances i JOIN partitions p USING (partition_key) WHERE status = 2"
            )
            by_sop = {r["sop_uid"]: r for r in committed}
            files = {b.name: b async for b in blobs.list_blobs(ROOT)}
            for r in committed:
                info = files.get(r["blob_name"])
                if info is None:
                    problems.append(f"committed row {r['watermark']} has no blob")
                elif info.size != r["size"] or info.etag.strip('"') != (r["blob_etag"] or "").strip('"'):
                    problems.append(f"committed row {r['watermark']} differs from its blob (size/etag)")
            orphans_after = [
                n
                for n in files
                if not n.startswith(ROOT + "healthCheck/") and n not in {r["blob_name"] for r in committed}
            ]
            if orphans_after:
                problems.append(f"{len(orphans_after)} orphan blob(s) after a janitor pass")

            # change feed
            feed = await pool.fetch("SELECT watermark, sop_uid, action FROM changefeed")
            creates = {f["watermark"] for f in feed if f["action"] in ("create", "update")}
            deletes = {f["sop_uid"] for f in feed if f["action"] == "delete"}
            missing_feed = [r["watermark"] for r in committed if r["watermark"] not in creates]
            if missing_feed:
                problems.append(f"{len(missing_feed)} committed row(s) without a change-feed entry")
            if ledger.deleted - deletes:
                problems.append(f"{len(ledger.deleted - deletes)} acknowledged delete(s) without a change-feed entry")
    finally:
        await pool.close()

    lost = 0
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        for sop, (partition, study, series, data) in ledger.stored.items():
            prefix = "/v2" if partition == "Microsoft.Default" else f"/v2/partitions/{partition}"
            url = f"{prefix}/studies/{study}/series/{series}/instances/{sop}"
            if sop in ledger.deleted:
                if sop in by_sop:
                    problems.append("a deleted instance is still committed")
                r = await client.get(url + "/metadata", headers={"Accept": "application/dicom+json"})
                if r.status_code != 404:
                    problems.append(f"metadata of a deleted instance answered {r.status_code}")
                continue
            if sop not in by_sop:
                lost += 1
                problems.append("an acknowledged instance has no committed row")
                continue
            r = await client.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"})
            if sop in ledger.archived:
                if r.status_code != 424:
                    problems.append(f"an archived instance answered {r.status_code}, not 424")
                continue
            if r.status_code != 200 or r.content != data:
                lost += 1
                problems.append(f"an acknowledged instance retrieves {r.status_code} / not byte-identical")
        # search and metadata show exactly the committed instances of every touched study
        studies = {(p, st) for p, st, _, _ in ledger.stored.values()}
        for partition, study in studies:
            prefix = "/v2" if partition == "Microsoft.Default" else f"/v2/partitions/{partition}"
            expected = {r["sop_uid"] for r in committed if r["study_uid"] == study and r["partition"] == partition}
            shown: set[str] = set()
            for offset in range(0, 100_000, 100):  # QIDO pages of 100
                q = await client.get(
                    f"{prefix}/studies/{study}/instances",
                    params={"limit": 100, "offset": offset},
                    headers={"Accept": "application/dicom+json"},
                )
                if q.status_code not in (200, 204):
                    problems.append(f"QIDO answered {q.status_code}")
                page = {i["00080018"]["Value"][0] for i in q.json()} if q.status_code == 200 else set()
                shown |= page
                if len(page) < 100:
                    break
            if shown != expected:
                problems.append(f"QIDO shows {len(shown)} instance(s), index has {len(expected)}")
            m = await client.get(f"{prefix}/studies/{study}/metadata", headers={"Accept": "application/dicom+json"})
            meta = {i["00080018"]["Value"][0] for i in m.json()} if m.status_code == 200 else set()
            if meta != expected:
                problems.append(f"metadata shows {len(meta)} instance(s), index has {len(expected)}")

    if ledger.server_errors:
        problems.append(f"server errors returned: {ledger.server_errors[:5]}")
    if "unhandled error" in stack.service_logs():
        problems.append("the service logged an unhandled error")
    report = Report(
        acknowledged=len(ledger.stored),
        lost=lost,
        committed=len(committed),
        orphans_before_janitor=orphans_before,
        orphans_after_janitor=len(orphans_after),
        pending_swept=janitor.expired_reservations,
    )
    if problems:
        raise InvariantError("; ".join(problems) + f" ({report.as_dict()})")
    return report
