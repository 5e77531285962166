"""A machine's disk writes, for tests of live volumes: a separate process that writes
sequence-stamped 4 KiB blocks through an NBD URI without pause, and logs for every write when it
was sent and when it was acknowledged (time.time_ns(), the host's realtime clock, the one QEMU
stamps its events with). The checks that go with it are here too.

    python -m tests.nbdwriter URI LOG --offset BYTES --slots N [--fua]

Write `seq` goes to slot `seq * STRIDE % slots` of the region [offset, offset + slots * 4 KiB), so
successive writes scatter over the region and later writes overwrite earlier slots. A block holds
a magic, its sequence number and slot, bytes derived from the sequence number, and a sha256 of
all that. LOG gets one record per write (seq, send_ns, ack_ns; ack_ns = -1 when the write failed)
and is complete once the writer exits (SIGTERM or SIGINT stop it). The writer reconnects when the
server goes away (a killed daemon), and stops by itself if its parent dies.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BLOCK = 4096
MAGIC = b"BVWRITE1"
STRIDE = 1021  # odd, so coprime with any power-of-two slot count: every slot is visited in turn
RECORD = struct.Struct("<qqq")  # seq, send_ns, ack_ns
HEADER = struct.Struct("<8sQQ")  # magic, seq, slot
MAX_RUN_S = 600.0


def slot_of(seq: int, slots: int) -> int:
    return seq * STRIDE % slots


def block(seq: int, slots: int) -> bytes:
    head = HEADER.pack(MAGIC, seq, slot_of(seq, slots))
    body = head + hashlib.shake_128(head).digest(BLOCK - 32 - len(head))
    return body + hashlib.sha256(body).digest()


def decode(data: bytes, slots: int) -> int | None:
    """The sequence number of a writer block, None if `data` is not one; AssertionError if it is
    a damaged or misplaced one."""
    if not data.startswith(MAGIC):
        return None
    _, seq, _ = HEADER.unpack_from(data)
    assert hashlib.sha256(data[:-32]).digest() == data[-32:], f"write {seq}: checksum mismatch"
    assert data == block(seq, slots), f"write {seq}: not the bytes that were written"
    return seq


# -- the writer -----------------------------------------------------------------------------------


def _connect(uri: str):  # type: ignore[no-untyped-def]
    import nbd

    h = nbd.NBD()
    h.connect_uri(uri)
    return h


def main(argv: list[str] | None = None) -> int:
    import nbd

    ap = argparse.ArgumentParser()
    ap.add_argument("uri")
    ap.add_argument("log", type=Path)
    ap.add_argument("--offset", type=int, required=True)
    ap.add_argument("--slots", type=int, required=True)
    ap.add_argument("--fua", action="store_true")
    args = ap.parse_args(argv)
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    parent, started = os.getppid(), time.monotonic()
    h = _connect(args.uri)
    if args.fua and not h.can_fua():
        print("the export does not support FUA", file=sys.stderr)
        return 2
    flags = nbd.CMD_FLAG_FUA if args.fua else 0
    ready = args.log.with_name(args.log.name + ".ready")
    seq = 0
    with open(args.log, "wb", buffering=1 << 20) as log:
        while not stop:
            data = block(seq, args.slots)
            offset = args.offset + slot_of(seq, args.slots) * BLOCK
            sent = time.time_ns()
            try:
                h.pwrite(data, offset, flags)
                acked = time.time_ns()
            except nbd.Error:
                acked = -1
            log.write(RECORD.pack(seq, sent, acked))
            if acked < 0:  # the server went away: reconnect until it is back (or we are stopped)
                h = None
                while h is None and not stop:
                    time.sleep(0.02)
                    try:
                        h = _connect(args.uri)
                    except nbd.Error:
                        h = None
            elif seq == 0:
                ready.touch()
            seq += 1
            if acked < 0 or seq % 256 == 0:
                log.flush()  # so that a test can follow the writes as they happen
            if seq % 1024 == 0 and (os.getppid() != parent or time.monotonic() - started > MAX_RUN_S):
                break
        if h is not None and not args.fua:
            h.flush()
    return 0


# -- driving it from a test -----------------------------------------------------------------------


@dataclass(frozen=True)
class Write:
    seq: int
    sent: int  # ns
    acked: int  # ns; -1: failed (no answer), so it may or may not have reached the disk


class Writer:
    """The writer process, started by a test."""

    def __init__(self, uri: str, log: Path, *, offset: int, slots: int, fua: bool = False) -> None:
        self.log, self.slots, self.offset = log, slots, offset
        args = [sys.executable, "-m", "tests.nbdwriter", uri, str(log), "--offset", str(offset)]
        args += ["--slots", str(slots), *(["--fua"] if fua else [])]
        root = Path(__file__).resolve().parent.parent
        self.proc = subprocess.Popen(args, cwd=root, stderr=subprocess.PIPE)
        ready = log.with_name(log.name + ".ready")
        deadline = time.monotonic() + 30
        while not ready.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"writer exited: {self.proc.stderr.read().decode()}")  # type: ignore[union-attr]
            if time.monotonic() > deadline:
                raise RuntimeError("the writer made no write in 30 s")
            time.sleep(0.01)

    def stop(self) -> list[Write]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        assert rc == 0, self.proc.stderr.read().decode()  # type: ignore[union-attr]
        return self.writes()

    def wait_for(self, count: int, timeout: float = 60) -> None:
        """Until the log holds at least `count` writes (it is flushed every 256 writes)."""
        deadline = time.monotonic() + timeout
        while self.log.stat().st_size // RECORD.size < count:
            assert self.proc.poll() is None, "the writer exited"
            assert time.monotonic() < deadline, f"the writer made fewer than {count} writes in {timeout} s"
            time.sleep(0.02)

    def writes(self) -> list[Write]:
        raw = self.log.read_bytes()
        whole = len(raw) // RECORD.size * RECORD.size
        out = [Write(*RECORD.unpack_from(raw, pos)) for pos in range(0, whole, RECORD.size)]
        assert [w.seq for w in out] == list(range(len(out)))
        return out


def slots_in(image: Path, offset: int, slots: int, original: bytes) -> list[int | None]:
    """The write each slot of `image` (a raw file) holds, None for the original bytes `original`
    of the region; AssertionError for anything else."""
    found: list[int | None] = []
    with open(image, "rb") as fh:
        fh.seek(offset)
        region = fh.read(slots * BLOCK)
    region += bytes(slots * BLOCK - len(region))
    for slot in range(slots):
        data = region[slot * BLOCK : (slot + 1) * BLOCK]
        seq = decode(data, slots)
        if seq is None:
            assert data == original[slot * BLOCK : (slot + 1) * BLOCK], f"slot {slot}: foreign bytes"
        else:
            assert slot_of(seq, slots) == slot, f"write {seq} found in slot {slot}"
        found.append(seq)
    return found


def state_after(prefix: int, slots: int) -> list[int | None]:
    """What each slot holds after writes 0..prefix-1."""
    state: list[int | None] = [None] * slots
    for seq in range(max(0, prefix - slots), prefix):
        state[slot_of(seq, slots)] = seq
    return state


def stop_daemons(run_dir: Path) -> None:
    """Stop the daemons a deployment's volumes left running in `run_dir` (`Deployment.run_dir`,
    where the pool really put them): qemu-storage-daemon
    and the nbdkit backing servers of instant restores both daemonize and outlive the server."""
    from bootvault.pool.daemon import Runtime

    if not run_dir.is_dir():
        return
    for pidfile in run_dir.glob("*/qsd.pid"):
        with contextlib.suppress(OSError):
            Runtime(run_dir, (pidfile.parent / "volume").read_text().strip()).stop()
    for pidfile in run_dir.glob("*/backing.pid"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text().strip())
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].endswith(b"nbdkit"):
                os.kill(pid, signal.SIGTERM)


def assert_zero_from(path: Path, start: int) -> None:
    """Everything of the raw file `path` from `start` on reads as zeros."""
    with open(path, "rb") as fh:
        for a, b in data_extents(path, start):
            fh.seek(a)
            for pos in range(a, b, 1 << 20):
                chunk = fh.read(min(1 << 20, b - pos))
                assert chunk == bytes(len(chunk)), f"{path}: non-zero data at {pos}"


def data_extents(path: Path, start: int = 0) -> Iterator[tuple[int, int]]:
    """Data extents [a, b) of a sparse file from `start` on."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size, off = os.fstat(fd).st_size, start
        while off < size:
            try:
                a = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:
                return
            b = os.lseek(fd, a, os.SEEK_HOLE)
            yield a, b
            off = b
    finally:
        os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
