"""The standard workload, built deterministically (the anchors' mkimg.py, mutate.py, mutate_clustered.py).

Base image: runs of 1-32 MiB picked by random.Random(42) weighted by the MiB left of each kind:
40 % holes, 40 % bytes of the files under /usr (os.walk sorted, no repeats), 20 % random bytes.
Unlike the anchors the random bytes come from random.Random(...).randbytes, so reruns are identical.
Mutation A rewrites 1 % of the 4 KiB blocks (Random(7) sample); mutation B rewrites
1 % / 64 extents of 64 blocks (256 KiB), Random(11): 81 extents on the 2 GiB image.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

MIB = 1 << 20
BLOCK = 4096
IMAGE_SEED, DATA_SEED, MUT_A_SEED, MUT_B_SEED = 42, 4242, 7, 11
EXTENT_BLOCKS = 64  # mutation B: 256 KiB extents
FORMAT_VERSION = 1  # bump when the generator changes, to invalidate cached images


def plan_runs(size_mib: int) -> list[tuple[str, int]]:
    """The run list of mkimg.py: (kind, MiB) with kind in zero / comp / rand."""
    zero, rand = int(size_mib * 0.4), int(size_mib * 0.2)  # 2048 MiB: 819 / 820 / 409
    return _plan({"zero": zero, "comp": size_mib - zero - rand, "rand": rand})


def plan_data_runs(data_mib: int) -> list[tuple[str, int]]:
    """The data runs of the standard image without its holes: 2/3 /usr bytes, 1/3 random."""
    rand = data_mib // 3
    return _plan({"comp": data_mib - rand, "rand": rand})


def _plan(left: dict[str, int]) -> list[tuple[str, int]]:
    rng, runs = random.Random(IMAGE_SEED), []
    while sum(left.values()) > 0:
        kinds = [k for k, v in left.items() if v > 0]
        kind = rng.choices(kinds, weights=[left[k] for k in kinds])[0]
        n = min(left[kind], rng.randint(1, 32))
        runs.append((kind, n))
        left[kind] -= n
    return runs


def usr_files() -> Iterator[str]:
    for root, dirs, files in os.walk("/usr"):
        dirs.sort()
        files.sort()
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path) and os.path.isfile(path):
                yield path


def usr_fingerprint(nbytes: int) -> str:
    """Identity of the /usr files the image would consume (path, size, mtime), cheap to compute.

    /usr changes when packages are installed, which changes the image: the cache key includes this.
    """
    h, total = hashlib.sha256(), 0
    for path in usr_files():
        try:
            st = os.stat(path)
        except OSError:
            continue
        h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        total += st.st_size
        if total >= nbytes + 64 * MIB:  # margin for unreadable files
            break
    return h.hexdigest()


class _UsrBytes:
    """Consecutive bytes of the /usr files, never repeating (mkimg.py's compressible())."""

    def __init__(self) -> None:
        self.files, self.buf = usr_files(), bytearray()

    def take(self, n: int) -> bytes:
        while len(self.buf) < n:
            try:
                path = next(self.files)
            except StopIteration:
                raise RuntimeError("/usr has too few bytes for this image size") from None
            try:
                with open(path, "rb") as fh:
                    self.buf += fh.read()
            except OSError:
                continue
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


def build_image(path: Path, size_mib: int) -> dict[str, int]:
    """Write the base image to path (sparse); return the MiB of each kind."""
    usr, data_rng = _UsrBytes(), random.Random(DATA_SEED)
    counts = {"zero": 0, "comp": 0, "rand": 0}
    with open(path, "wb") as fh:
        fh.truncate(size_mib * MIB)
        off = 0
        for kind, n in plan_runs(size_mib):
            counts[kind] += n
            if kind == "comp":
                fh.seek(off)
                fh.write(usr.take(n * MIB))
            elif kind == "rand":
                fh.seek(off)
                for _ in range(n):
                    fh.write(data_rng.randbytes(MIB))
            off += n * MIB
        fh.flush()
        os.fsync(fh.fileno())
    return counts


def base_image(cache_dir: Path, size_mib: int) -> tuple[Path, dict[str, object]]:
    """The cached base image for size_mib (built when missing) and its metadata."""
    params = {
        "version": FORMAT_VERSION,
        "size_mib": size_mib,
        "seeds": [IMAGE_SEED, DATA_SEED],
        "usr": usr_fingerprint(int(size_mib * 0.4) * MIB + MIB),
    }
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    image, meta_path = cache_dir / f"base-{size_mib}m-{key}.img", cache_dir / f"base-{size_mib}m-{key}.json"
    if image.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        meta["cached"] = True
        return image, meta
    cache_dir.mkdir(parents=True, exist_ok=True)
    for old in cache_dir.glob(f"base-{size_mib}m-*"):  # one cached image per size
        old.unlink()
    tmp = image.with_suffix(".tmp")
    counts = build_image(tmp, size_mib)
    meta = {**params, "key": key, "mib": counts, "sha256": sha256_file(tmp), "allocated": allocated(tmp)}
    os.replace(tmp, image)
    meta_path.write_text(json.dumps(meta, indent=1))
    meta["cached"] = False
    return image, meta


LIVE_SLOT_MIB = 32  # a live volume's data runs (1-32 MiB) each start a 32 MiB slot
LIVE_SEED = 64


def live_layout(volume_gib: int, data_mib: int) -> list[tuple[int, str, int]]:
    """Where the data of a live volume goes: (offset, kind, MiB) per run, in offset order. Each
    run of plan_data_runs starts a 32 MiB slot picked by Random(64) among all the volume's slots."""
    runs = plan_data_runs(data_mib)
    slots = volume_gib * 1024 // LIVE_SLOT_MIB
    if len(runs) > slots:
        raise ValueError(f"{data_mib} MiB of data do not fit a {volume_gib} GiB volume in 32 MiB slots")
    picks = sorted(random.Random(LIVE_SEED).sample(range(slots), len(runs)))
    return [(slot * LIVE_SLOT_MIB * MIB, kind, n) for slot, (kind, n) in zip(picks, runs, strict=True)]


def build_live_image(path: Path, volume_gib: int, data_mib: int) -> dict[str, int]:
    """A sparse volume_gib image holding data_mib of the standard workload's data (its /usr
    bytes and Random(4242) bytes, holes left out), laid out by live_layout."""
    usr, data_rng = _UsrBytes(), random.Random(DATA_SEED)
    counts = {"comp": 0, "rand": 0}
    with open(path, "wb") as fh:
        fh.truncate(volume_gib << 30)
        for off, kind, n in live_layout(volume_gib, data_mib):
            counts[kind] += n
            fh.seek(off)
            if kind == "comp":
                fh.write(usr.take(n * MIB))
            else:
                for _ in range(n):
                    fh.write(data_rng.randbytes(MIB))
        fh.flush()
        os.fsync(fh.fileno())
    return counts


def live_image(cache_dir: Path, volume_gib: int, data_mib: int) -> tuple[Path, dict[str, object]]:
    """The cached live-volume image (built when missing) and its metadata."""
    params = {
        "version": FORMAT_VERSION,
        "volume_gib": volume_gib,
        "data_mib": data_mib,
        "seeds": [IMAGE_SEED, DATA_SEED, LIVE_SEED],
        "usr": usr_fingerprint(data_mib * MIB),
    }
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    stem = f"live-{volume_gib}g-{data_mib}m"
    image, meta_path = cache_dir / f"{stem}-{key}.img", cache_dir / f"{stem}-{key}.json"
    if image.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        meta["cached"] = True
        return image, meta
    cache_dir.mkdir(parents=True, exist_ok=True)
    for old in cache_dir.glob("live-*"):  # one cached live image
        old.unlink()
    tmp = image.with_suffix(".tmp")
    counts = build_live_image(tmp, volume_gib, data_mib)
    meta = {**params, "key": key, "mib": counts, "allocated": allocated(tmp)}
    os.replace(tmp, image)
    meta_path.write_text(json.dumps(meta, indent=1))
    meta["cached"] = False
    return image, meta


def scattered_writes(size: int, total: int, seed: int) -> list[Write]:
    """total bytes as 4 KiB writes at distinct random 4 KiB-aligned offsets (Random(seed))."""
    rng = random.Random(seed)
    picks = rng.sample(range(size // BLOCK), total // BLOCK)
    return [(b * BLOCK, rng.randbytes(BLOCK)) for b in picks]


def clustered_writes(size: int, total: int, run: int, seed: int) -> list[Write]:
    """total bytes as runs of `run` bytes at random 4 KiB-aligned offsets (Random(seed)), as
    mutation B places its extents (runs may overlap)."""
    rng = random.Random(seed)
    nblk, run_blocks = size // BLOCK, run // BLOCK
    out = []
    for _ in range(total // run):
        b = rng.randrange(0, nblk - run_blocks)
        out.append((b * BLOCK, rng.randbytes(run)))
    return out


def dirty_bytes(writes: list[Write], granularity: int) -> int:
    """Bytes a dirty bitmap of this granularity marks for these writes."""
    units: set[int] = set()
    for off, data in writes:
        units.update(range(off // granularity, (off + len(data) - 1) // granularity + 1))
    return len(units) * granularity


def sparse_sha256(path: Path) -> str:
    """sha256 of a (sparse) file's content: its data extents are read, its holes are hashed as
    the zeros they read as without reading them (a 64 GiB volume holding 2 GiB reads 2 GiB)."""
    h, buf = hashlib.sha256(), bytearray(4 * MIB)
    zero, view = bytes(4 * MIB), memoryview(buf)
    fd = os.open(path, os.O_RDONLY)
    try:
        size, pos = os.fstat(fd).st_size, 0
        for start, end in [*data_extents(fd, size), (size, size)]:
            while pos < start:  # a hole
                n = min(len(zero), start - pos)
                h.update(zero[:n] if n < len(zero) else zero)
                pos += n
            while pos < end:
                n = os.preadv(fd, [view[: min(len(buf), end - pos)]], pos)
                if n == 0:
                    raise OSError(f"short read of {path} at {pos}")
                h.update(view[:n])
                pos += n
    finally:
        os.close(fd)
    return h.hexdigest()


def data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    off = 0
    while off < size:
        try:
            start = os.lseek(fd, off, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                return
            raise
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end
        off = end


def sparse_copy(src: Path, dst: Path) -> None:
    """Copy src to dst keeping exactly its holes (SEEK_DATA/SEEK_HOLE + copy_file_range)."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        size = os.fstat(fin.fileno()).st_size
        fout.truncate(size)
        for start, end in data_extents(fin.fileno(), size):
            off = start
            while off < end:
                n = os.copy_file_range(fin.fileno(), fout.fileno(), end - off, off, off)
                if n == 0:
                    raise OSError(f"short copy of {src} at {off}")
                off += n


Write = tuple[int, bytes]  # (offset, bytes)


def writes_a(size: int) -> Iterator[Write]:
    """Mutation A: 1 % of the 4 KiB blocks rewritten at random (Random(7))."""
    nblk = size // BLOCK
    rng = random.Random(MUT_A_SEED)
    picks = rng.sample(range(nblk), int(nblk * 0.01))
    for b in picks:
        yield b * BLOCK, rng.randbytes(BLOCK)


def writes_b(size: int) -> Iterator[Write]:
    """Mutation B: 1 % / 64 random extents of 256 KiB rewritten (Random(11))."""
    nblk = size // BLOCK
    rng = random.Random(MUT_B_SEED)
    count = int(nblk * 0.01) // EXTENT_BLOCKS
    for _ in range(count):
        b = rng.randrange(0, nblk - EXTENT_BLOCKS)
        yield b * BLOCK, rng.randbytes(EXTENT_BLOCKS * BLOCK)


def apply_to_file(path: Path, writes: Iterator[Write]) -> int:
    """Write every (offset, bytes) into a raw image file; return the bytes written."""
    total = 0
    with open(path, "r+b") as fh:
        for off, data in writes:
            fh.seek(off)
            fh.write(data)
            total += len(data)
    return total


def mutate_a(path: Path, size: int) -> int:
    """Rewrite 1 % of the 4 KiB blocks at random (Random(7)); return the bytes written."""
    return apply_to_file(path, writes_a(size))


def mutate_b(path: Path, size: int) -> int:
    """Rewrite 1 % / 64 random extents of 256 KiB (Random(11)); return the bytes written."""
    return apply_to_file(path, writes_b(size))


def sha256_file(path: Path, length: int | None = None) -> str:
    """sha256 of the first length bytes (default: the whole file; past EOF reads as zeros)."""
    h, buf = hashlib.sha256(), bytearray(4 * MIB)
    view, done = memoryview(buf), 0
    with open(path, "rb", buffering=0) as fh:
        while length is None or done < length:
            want = len(buf) if length is None else min(len(buf), length - done)
            n = fh.readinto(view[:want])
            if not n:
                break
            h.update(view[:n])
            done += n
    if length is not None and done < length:
        h.update(bytes(length - done))
    return h.hexdigest()


def tail_is_zero(path: Path, start: int) -> bool:
    """True if every byte of path from start on is zero (holes are not read)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        for s, e in data_extents(fd, size):
            s = max(s, start)
            while s < e:
                chunk = os.pread(fd, min(4 * MIB, e - s), s)
                if chunk.count(0) != len(chunk):
                    return False
                s += len(chunk)
    finally:
        os.close(fd)
    return True


def matches(other: Path, size: int, expected_sha: str) -> bool:
    """Does other hold exactly the image bytes (size of them, then at most a zero tail)?"""
    if other.stat().st_size < size:
        return False
    return sha256_file(other, size) == expected_sha and tail_is_zero(other, size)


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512
