"""Measuring: /usr/bin/time -v around commands, /proc accounting for long-lived processes, du."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

TIME_BIN = "/usr/bin/time"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A measured command or a service failed; the message says exactly how."""


@dataclass
class Sample:
    """One tool at one step. Bytes are exact; times are seconds; rss is KiB."""

    tool: str
    step: str
    wall: float = 0.0
    cpu: float = 0.0
    rss_kib: int = 0
    stored: int | None = None  # growth of the repository / chunk store during the step
    repo_total: int | None = None
    allocated: int | None = None  # restore: st_blocks*512 of the restored file
    verified: bool | None = None  # restore: sha256 equals the source state
    other_cpu: float | None = None  # machine CPU busy during the step minus this tool's: other load
    extra: dict[str, float | int | str] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Timed:
    wall: float
    user: float
    sys: float
    rss_kib: int

    @property
    def cpu(self) -> float:
        return self.user + self.sys


def _parse_time_v(text: str) -> tuple[float, float, int]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().rpartition(": ")
        if sep:
            values[key] = value
    try:
        return (
            float(values["User time (seconds)"]),
            float(values["System time (seconds)"]),
            int(values["Maximum resident set size (kbytes)"]),
        )
    except KeyError as exc:
        raise BenchError(f"cannot parse /usr/bin/time -v output: {text[-500:]}") from exc


def timed(cmd: list[str], log: Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> Timed:
    """Run cmd under /usr/bin/time -v (output to log); wall is measured here around it."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf, open(log, "ab") as out:
        out.write(f"$ {' '.join(cmd)}\n".encode())
        out.flush()
        start = time.perf_counter()
        proc = subprocess.run(
            [TIME_BIN, "-v", "-o", tf.name, *cmd], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        wall = time.perf_counter() - start
        report = Path(tf.name).read_text()
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-1500:]
        raise BenchError(f"{' '.join(cmd)} exited {proc.returncode}; log {log}:\n{tail}")
    user, sys_, rss = _parse_time_v(report)
    return Timed(wall, user, sys_, rss)


def du_bytes(path: Path) -> int:
    """Apparent size of everything under path (du -sb), 0 if it does not exist."""
    if not path.exists():
        return 0
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def proc_cpu(pid: int) -> float:
    """utime + stime of a live process (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of proc(5)


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM (echo 5 > /proc/PID/clear_refs); False if the kernel refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def machine_busy_cpu() -> float:
    """CPU seconds the whole machine has spent busy (all CPUs, /proc/stat), to spot other load."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / CLK_TCK  # user nice system irq softirq steal


def wait_quiet(max_wait_s: float, busy_cpus: float = 0.25) -> tuple[float, bool]:
    """Wait until the machine was busy less than busy_cpus CPUs over one second (other jobs).

    Returns (seconds waited, quiet reached).
    """
    start = time.monotonic()
    while True:
        before = machine_busy_cpu()
        time.sleep(1.0)
        if machine_busy_cpu() - before < busy_cpus:
            return time.monotonic() - start, True
        if time.monotonic() - start >= max_wait_s:
            return time.monotonic() - start, False


def sync() -> None:
    os.sync()


def drop_caches() -> bool:
    """sync and drop the page cache; False if not permitted (containers often refuse)."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3")
        return True
    except OSError:
        return False


def fmt_mib(n: int | float | None) -> str:
    return "-" if n is None else f"{n / (1 << 20):,.1f}"


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 20 s."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
