"""bench/RESULTS-chaos.md from the JSON reports of chaos runs (bench/chaos.py --results A.json ...)."""

from __future__ import annotations

import json
from pathlib import Path

HEADER = """# Chaos soak results

`bench/chaos.py` (`make chaos SEED=... MINUTES=... BACKEND=sqlite|pg`) runs a mixed workload
through the oci SDK and the admin CLI while a chaos thread SIGKILLs a random part every 1-4 s
(from the seed): an API process, a worker, an attached volume's qemu-storage-daemon, a hydrating
volume's nbdkit, and on PostgreSQL + SeaweedFS the S3 server or every PostgreSQL backend of the run
(pg_terminate_backend). The rig restarts killed API processes, workers and S3 after 0.3-2 s, as a
supervisor would; the volume daemons are brought back by bootvault's own reconcile and hydration.
After the last fault every invariant of bench/chaoscheck.py is checked.

"Settle" is, for each fault, the time from the fault until every backup, volume and job that
was in a transitional state at its instant (REQUEST_RECEIVED, CREATING, TERMINATING, RESTORING,
PROVISIONING, a volume still hydrating, a queued or running job) had left it.
"""


BUGS = """## Bugs the soak found

1. **500 when PostgreSQL drops a connection.** A request whose database connection was dropped
   (backend terminated, server restarted) or refused answered 500 InternalServerError; it now
   answers 503 ServiceUnavailable, which the SDK and clients retry (a create with its retry
   token, so exactly once). Found by the pg run's `pg` faults (pg_terminate_backend). Fixed in
   8e7b105 (`api/common.py`, `store/db.py`, `service/context.py`); regression test
   `tests/e2e/test_database_outage.py` (a TCP relay between the server and PostgreSQL, cut and
   restored).
2. **A killed hydration leaked its half-restored base for ever.** `fsutil.tmp_name` cuts the
   name at 100 characters: with a 97-character OCID, `.tmp-<random>-<ocid>.base` lost the end
   of `.base`, and `PoolVolume.clear_tmp` looked for the whole name, so the next run never
   removed it (1 GiB sparse here; the same held for `.qcow2` temporaries of restores, clones
   and imports). Found by a sqlite run: a worker killed mid-hydration, invariant `pool-files`.
   Fixed in 02f3bc6 (`fsutil.py`, `pool/volume.py`); regression test
   `tests/unit/test_pool.py::test_leftover_temporaries_of_a_long_ocid_are_cleared`.
3. **Growing a volume after its daemon was killed made it FAULTY.** A SIGKILLed
   qemu-storage-daemon leaves the volume's persistent bitmaps "in use" (inconsistent); backups
   drop them, but a grow ran `qemu-img resize`, which refuses such an image ("Bitmap 'bv.origin'
   is inconsistent and cannot be used"), and the volume went FAULTY. Found by the 20-minute
   sqlite run (a FAULTY volume with that reason; invariant `faulty-has-reason` held, the reason
   showed the bug). Fixed in 71ee4f3 (`pool/volume.py`: the grow drops the bitmaps left in
   use); regression test `tests/unit/test_pool.py::test_grow_after_the_daemon_was_killed`.
   The long runs below started before this fix (their processes run a snapshot of the code).
4. **A job made FAULTY by a dropped database connection.** In the 20-minute pg run a backup
   went FAULTY with "Internal error while running the backup job: OperationalError: ... server
   closed the connection unexpectedly" (a `pg` fault terminated its connection mid-transaction).
   A dropped connection is transient: the job is now left for another attempt (its lease runs
   out and a worker re-runs it, attempts counted), as when a worker dies. Fixed in e9c65fc
   (`service/jobs.py`, `service/context.py`);
   regression test `tests/e2e/test_job_database_outage.py` (the backup's row held locked so the
   worker's update waits, that backend terminated). The long runs below predate this fix.
"""


def render(paths: list[Path]) -> str:
    out = [HEADER, BUGS]
    for path in paths:
        d = json.loads(path.read_text())
        minutes = d["seconds"] / 60
        out.append(f"## {d['backend']}, seed {d['seed']}, {minutes:.0f} minutes\n")
        out.append(
            f"- faults: {len(d['faults'])} — "
            + ", ".join(f"{k} {v}" for k, v in sorted(d["faults_by_target"].items()))
        )
        out.append(
            f"- settle after a fault: p50 {d['settle_p50']:.1f} s, p99 {d['settle_p99']:.1f} s "
            f"({len(d['settle_after_fault'])} faults); after the last fault: {d['settle_after_last']} s"
        )
        ops = {k: v for k, v in d["counts"].get("ops", {}).items() if not k.endswith("seconds")}
        out.append("- operations: " + ", ".join(f"{k} {v}" for k, v in sorted(ops.items())))
        c = d["counts"]
        out.append(
            f"- HTTP statuses: {c.get('statuses')}; attempts without an answer "
            f"(connection refused or reset, retried): {c.get('unanswered_attempts')}"
        )
        out.append(
            f"- end state: backups {c.get('backups')}, volumes {c.get('volumes')}, scheduled backups "
            f"{c.get('scheduled_backups')}, live writes acknowledged {c.get('live_writes_acknowledged')}"
        )
        out.append("\n| invariant | checked | held |\n|---|---|---|")
        for name, n in d["invariants"].items():
            bad = [v for v in d["violations"] if v.startswith(name + ":")]
            out.append(f"| {name} | {n} | {'yes' if not bad else f'NO ({len(bad)})'} |")
        if d["violations"]:
            out.append("\nViolations:\n")
            out.extend(f"- {v}" for v in d["violations"][:30])
        out.append("")
    return "\n".join(out) + "\n"
