"""What a live-volume run (bench/live.py) records: a measured backup (Step), a writer phase
(WriterRun), a backup job's times from the worker's log, dirty 64 KiB units merged into runs, and
bench/run.py's last standard incr-B."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import workload
from bvrig import BootvaultRig
from measure import Sample

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
MIB = workload.MIB
GRANULARITY = 64 << 10  # the dirty bitmaps' granularity: the engine's default block size


@dataclass
class Step:
    """One measured backup and what preceded it."""

    name: str
    what: str
    sample: Sample
    raw_written: int = 0
    dirty: int = 0
    write_s: float = 0.0
    job_s: float | None = None  # worker: claim -> finish (its log)
    pickup_s: float | None = None  # Create call -> worker claim
    busy: bool = False  # started while the machine was still busy with other work
    other_cpu: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def bytes_read(self) -> int | None:
        v = self.sample.extra.get("bytes_read")
        return None if v is None else int(v)


@dataclass
class WriterRun:
    phase: str
    window_s: float
    latencies_ns: list[int]
    qsd_cpu_s: float
    backup: Step | None = None

    @property
    def iops(self) -> float:
        return len(self.latencies_ns) / self.window_s if self.window_s else 0.0

    def pct_us(self, q: float) -> float:
        lat = sorted(self.latencies_ns)
        if not lat:
            return float("nan")
        return lat[min(len(lat) - 1, int(q * len(lat)))] / 1000


def _log_time(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(line["time"]).timestamp()


def job_times(rig: BootvaultRig, backup_id: str) -> tuple[float, float] | None:
    """(claimed, finished) wall-clock times of the backup's job, from the worker's log."""
    claimed = job = None
    for raw in rig.worker_log.read_text(errors="replace").splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        msg = str(line.get("message", ""))
        if line.get("resource") == backup_id and msg.startswith("claimed job"):
            claimed, job = _log_time(line), line.get("job")
        elif job is not None and msg == f"job {job} finished" and claimed is not None:
            return claimed, _log_time(line)
    return None


def merge_units(units: list[int]) -> list[tuple[int, int]]:
    """Sorted 64 KiB unit numbers merged into [first, end) runs."""
    runs: list[list[int]] = []
    for u in units:
        if runs and runs[-1][1] == u:
            runs[-1][1] = u + 1
        else:
            runs.append([u, u + 1])
    return [(a, b) for a, b in runs]


def standard_incremental() -> dict[str, Any] | None:
    """bench/run.py's last run: bootvault's incr-B and the best peer's, if it was a standard run."""
    path = BENCH / "work" / "last-run.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    samples = [s for s in data["samples"] if s["step"] == "incr-B" and s["error"] is None]
    bv = next((s for s in samples if s["tool"] == "bootvault"), None)
    peers = [s for s in samples if s["tool"] != "bootvault"]
    if bv is None or not peers:
        return {"data": data, "bv": None, "peer": None}
    return {"data": data, "bv": bv, "peer": min(peers, key=lambda s: s["wall"]), "peers": peers}
