"""The invariants a chaos run checks once its faults have stopped and everything has settled.

Each check adds to `report.invariants[name]` how many things it checked and appends to
`report.violations` what did not hold:

- api-5xx: no answer of 500 or above other than 503 (Api records them as they come).
- acknowledged-creates: every acknowledged create exists exactly once (a retried create with
  its retry token is one resource; no manual backup or created volume we never got an id for).
- acknowledged-deletes: every acknowledged delete ended TERMINATED.
- acknowledged-updates: names, retention locks and legal holds as last acknowledged.
- protected-never-deleted: a locked or held backup is neither TERMINATING nor TERMINATED.
- faulty-has-reason: every FAULTY backup or volume says why.
- scheduled-exactly-once: one backup per (volume, due time) run row, and every scheduled
  backup belongs to one run.
- backup-bytes: every backup AVAILABLE at the end (and each one restored during the run)
  restores to exactly what its volume held at its timeCreated.
- live-writes: the live volume, detached at the end, holds every acknowledged write.
- gc-and-verify: after two GC passes a grace period apart, a third (past the grace period)
  condemns nothing and leaves nothing condemned (so no pack is unreferenced), and verify passes.
- pool-files: the volume pool holds files of existing volumes only.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import oci
from chaosload import DATA, SLOTS, Workload, live_slots_ok

from tests.nbdwriter import BLOCK

PROTECTED_GONE = ("TERMINATING", "TERMINATED")


def check_all(w: Workload, db: Any, report: Any) -> None:
    from chaos import wait_settled

    def inv(name: str, n: int, problems: list[str]) -> None:
        report.invariants[name] = report.invariants.get(name, 0) + n
        report.violations.extend(f"{name}: {p}" for p in problems)

    inv("api-5xx", sum(w.api.statuses.values()), list(w.api.violations))
    from chaos import say

    live = _check_live(w)
    say("live writes checked; restoring every backup not checked yet")
    inv("live-writes", len(w.writer.writes) if w.writer else 0, live)
    _byte_sweep(w)
    wait_settled(db, time.monotonic(), report)
    inv("backup-bytes", len(w.checked), [f"{b}: {r}" for b, r in w.checked.items() if r != "ok"])
    inv("workload", len(w.checked), list(w.problems))
    say(f"{len(w.checked)} backups checked; ledger, scheduler, GC, verify, pool")
    backups, volumes = _listing(w)
    _check_ledger(w, backups, volumes, inv)
    _check_scheduled(db, backups, inv)
    _check_gc_verify(w, db, inv)
    _check_pool(w, volumes, inv)
    report.counts["backups"] = _states(backups.values())
    report.counts["volumes"] = _states(volumes.values())
    report.counts["faulty"] = w.faulty
    report.counts["fleece_overlays_left"] = w.fleeces_left
    report.counts["scheduled_backups"] = sum(b.source_type == "SCHEDULED" for b in backups.values())
    report.counts["live_writes_acknowledged"] = sum(x.acked >= 0 for x in w.writer.writes) if w.writer else 0


def _states(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item.lifecycle_state] = out.get(item.lifecycle_state, 0) + 1
    return out


def _check_live(w: Workload) -> list[str]:
    assert w.writer is not None
    w.writer.stop_event.set()
    w.writer.join(timeout=30)
    live = next(v for v in w.vols.values() if v.live)
    w.detach(live.id)
    data = w.read_data(live.id, DATA + SLOTS * BLOCK)
    problems = [] if data[:DATA] == live.base else ["the live volume's static part changed"]
    return problems + live_slots_ok(data[DATA:], list(w.writer.writes), None)[:10]


def _byte_sweep(w: Workload) -> None:
    """Restore every AVAILABLE backup not checked yet and compare its bytes."""
    todo = [b.id for b in w.available_backups(None) if b.id not in w.checked]  # type: ignore[arg-type]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda backup_id: w.restore_and_check(backup_id, keep=False), todo))


def _listing(w: Workload) -> tuple[dict[str, Any], dict[str, Any]]:
    client = w.api.client(w.rig.endpoints[0])
    backups = oci.pagination.list_call_get_all_results(client.list_boot_volume_backups, w.compartment).data
    volumes = oci.pagination.list_call_get_all_results(
        client.list_boot_volumes, compartment_id=w.compartment
    ).data
    return {b.id: b for b in backups}, {v.id: v for v in volumes}


def _reason(item: Any) -> str:
    return ((item.system_tags or {}).get("bootvault") or {}).get("lifecycleDetails") or ""


def _check_ledger(w: Workload, backups: dict[str, Any], volumes: dict[str, Any], inv: Any) -> None:
    led = w.ledger
    manual = {b for b, x in backups.items() if x.source_type == "MANUAL"}
    problems = [f"backup {b} acknowledged, not found" for b in led.backups_created if b not in backups]
    problems += [
        f"manual backup {b} was never acknowledged (a duplicate?)" for b in manual - set(led.backups_created)
    ]
    created = {v for v, x in volumes.items() if x.source_details is not None}
    problems += [f"volume {v} acknowledged, not found" for v in led.volumes_created if v not in volumes]
    problems += [
        f"volume {v} was never acknowledged (a duplicate?)" for v in created - set(led.volumes_created)
    ]
    inv("acknowledged-creates", len(led.backups_created) + len(led.volumes_created), problems)
    problems = [f"backup {b} is {backups[b].lifecycle_state}" for b in led.backups_deleted
                if backups[b].lifecycle_state != "TERMINATED"]  # fmt: skip
    problems += [f"volume {v} is {volumes[v].lifecycle_state}" for v in led.volumes_deleted
                 if volumes[v].lifecycle_state != "TERMINATED"]  # fmt: skip
    inv("acknowledged-deletes", len(led.backups_deleted) + len(led.volumes_deleted), problems)
    problems = [f"backup {b} named {backups[b].display_name!r}, not {n!r}" for b, n in led.names.items()
                if backups[b].display_name != n]  # fmt: skip
    problems += [
        f"backup {b} lost its retention lock" for b in led.locked if not backups[b].is_retention_lock_enabled
    ]
    holds = {b: bool(backups[b].is_indefinite_retention_enabled) for b in led.held}
    problems += [
        f"backup {b}: legal hold {holds[b]}, acknowledged {h}" for b, h in led.held.items() if holds[b] != h
    ]
    inv("acknowledged-updates", len(led.names) + len(led.locked) + len(led.held), problems)
    protected = led.locked | {b for b, h in led.held.items() if h}
    problems = [f"backup {b} is {backups[b].lifecycle_state}" for b in protected
                if backups[b].lifecycle_state in PROTECTED_GONE]  # fmt: skip
    inv("protected-never-deleted", len(protected), problems)
    faulty = [x for x in [*backups.values(), *volumes.values()] if x.lifecycle_state == "FAULTY"]
    inv(
        "faulty-has-reason",
        len(faulty),
        [f"{x.id} is FAULTY without a reason" for x in faulty if not _reason(x)],
    )
    w.faulty = {x.id: _reason(x) for x in faulty}


def _check_scheduled(db: Any, backups: dict[str, Any], inv: Any) -> None:
    runs = db.rows("SELECT asset_id, due_time, backup_id FROM scheduled_runs WHERE backup_id IS NOT NULL")
    by_backup: dict[str, int] = {}
    for run in runs:
        by_backup[run.backup_id] = by_backup.get(run.backup_id, 0) + 1
    scheduled = {b for b, x in backups.items() if x.source_type == "SCHEDULED"}
    problems = [f"backup {b} is the backup of {n} due times" for b, n in by_backup.items() if n > 1]
    problems += [f"scheduled backup {b} has no run row" for b in scheduled - set(by_backup)]
    problems += [f"run row's backup {b} does not exist" for b in set(by_backup) - set(backups)]
    inv("scheduled-exactly-once", len(runs), problems)


def _check_gc_verify(w: Workload, db: Any, inv: Any) -> None:
    problems, reports = [], []
    grace = float(w.rig.env["BOOTVAULT_GC_GRACE_SECONDS"])
    for n in range(3):
        if n:
            time.sleep(grace + 1)  # between the passes; nothing waits on the third
        run = w.rig.cli("gc", check=False)
        if run.returncode != 0:
            problems.append(f"gc failed: {run.stderr[-300:]}")
            break
        reports.append(json.loads(run.stdout.strip().splitlines()[-1]))
    if len(reports) == 3 and reports[2]["condemned_packs"]:
        problems.append(f"the third GC still found unreferenced packs: {reports[2]}")
    if len(reports) == 3 and (left := db.rows("SELECT count(*) FROM gc_condemned")[0][0]):
        problems.append(f"{left} condemned packs left past the grace period: {reports}")
    run = w.rig.cli("verify", check=False)
    if run.returncode != 0:
        problems.append(f"verify exited {run.returncode}: {(run.stdout + run.stderr)[-300:]}")
    inv("gc-and-verify", 4, problems)


def _check_pool(w: Workload, volumes: dict[str, Any], inv: Any) -> None:
    """Files of existing volumes only. A point-in-time overlay (`.fleece-<runtime>-<tag>`) a
    killed backup left is cleared by the volume's next backup (pool/volume.py), so one of an
    existing volume is counted, not a violation; one of a deleted volume is."""
    from bootvault.pool.daemon import Runtime

    pools = Path(w.rig.env["BOOTVAULT_DATA_DIR"]) / "volumes"
    live = {v for v, x in volumes.items() if x.lifecycle_state != "TERMINATED"}
    runtimes = {Runtime(w.rig.run_dir, v).dir.name for v in live}
    problems, files, fleeces = [], sorted(p.name for p in pools.glob("*/*")), []
    for name in files:
        if name.startswith(".fleece-"):
            (fleeces if name.split("-")[1] in runtimes else problems).append(name)
            continue
        volume_id, _, suffix = name.rpartition(".")
        state = volumes[volume_id].lifecycle_state if volume_id in volumes else "unknown"
        if state in ("TERMINATED", "unknown") or suffix not in ("qcow2", "base", "backing"):
            problems.append(f"{name} ({state})")
    w.fleeces_left = fleeces
    inv("pool-files", len(files), problems)
