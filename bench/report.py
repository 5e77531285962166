"""The result tables (per tool, bootvault / best peer, targets), printed with rich and as Markdown."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from measure import Sample, fmt_mib
from rich.console import Console
from rich.table import Table as RichTable

BV = "bootvault"
STEPS = ["full", "incr-A", "restore-A", "incr-B"]
MIB = 1 << 20


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]

    def rich(self) -> RichTable:
        t = RichTable(title=self.title, title_justify="left")
        for h in self.headers:
            t.add_column(h, justify="left" if h in ("step", "tool", "target", "best peer") else "right")
        for row in self.rows:
            t.add_row(*[_colour(c) for c in row])
        return t

    def markdown(self) -> str:
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.headers) + " |"]
        lines.append("|" + "|".join("---" for _ in self.headers) + "|")
        lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in self.rows]
        return "\n".join(lines)


def _colour(cell: str) -> str:
    return {"PASS": "[green]PASS[/green]", "FAIL": "[red]FAIL[/red]"}.get(cell, cell)


def _get(samples: list[Sample], tool: str, step: str) -> Sample | None:
    return next((s for s in samples if s.tool == tool and s.step == step), None)


def best_peer(samples: list[Sample], step: str) -> Sample | None:
    """The peer with the lowest wall time at this step (the bar bootvault is compared with)."""
    peers = [s for s in samples if s.tool != BV and s.step == step and s.ok]
    return min(peers, key=lambda s: s.wall) if peers else None


def _notes(s: Sample) -> str:
    if s.error:
        return "ERROR: " + s.error.splitlines()[0][:160]
    parts = []
    if s.allocated is not None:
        parts.append(f"allocated {fmt_mib(s.allocated)} MiB")
    if s.verified is not None:
        parts.append("sha256 OK" if s.verified else "sha256 MISMATCH")
    x = s.extra
    if "unique_size_bytes" in x:
        parts.append(f"uniqueSizeBytes {fmt_mib(float(x['unique_size_bytes']))} MiB")
    if "worker_cpu_s" in x:
        qsd = f" + qsd {x['qsd_cpu_s']}" if "qsd_cpu_s" in x else ""
        parts.append(f"cpu worker {x['worker_cpu_s']} + api {x['api_cpu_s']}{qsd} s")
    if "bytes_read" in x and s.wall > 0:
        n = float(x["bytes_read"])
        parts.append(f"read {fmt_mib(n)} MiB over NBD ({n / 1e6 / s.wall:,.0f} MB/s of the wall)")
        parts.append(f"api peak RSS {int(x['api_peak_rss_kib']) // 1024} MiB")
    if "restore_wall_s" in x:
        parts.append(
            f"restore {x['restore_wall_s']} s + export {x['export_wall_s']} s "
            f"(export cpu {x['export_cpu_s']} s); pool file allocated "
            f"{fmt_mib(float(x['pool_file_allocated']))} MiB"
        )
    if "rss_note" in x:
        parts.append(str(x["rss_note"]))
    return "; ".join(parts)


def raw_table(samples: list[Sample], tools: list[str]) -> Table:
    rows = []
    for step in STEPS:
        for tool in tools:
            s = _get(samples, tool, step)
            if s is None:
                continue
            ok = s.ok
            rows.append(
                [
                    step,
                    tool,
                    f"{s.wall:.2f}" if ok else "-",
                    f"{s.cpu:.2f}" if ok else "-",
                    f"{s.rss_kib / 1024:.0f}" if ok else "-",
                    fmt_mib(s.stored) if ok else "-",
                    fmt_mib(s.repo_total) if ok else "-",
                    f"{s.other_cpu:.2f}" if ok and s.other_cpu is not None else "-",
                    _notes(s),
                ]
            )
    headers = ["step", "tool", "wall s", "CPU s", "peak RSS MiB", "stored Δ MiB", "repo MiB", "other CPU s"]
    title = (
        "Per tool (CPU = user+sys; stored Δ = du -sb growth of the repository; other CPU = machine "
        "busy time during the step not spent by the tool: other load makes the row noisy)"
    )
    return Table(title, [*headers, "notes"], rows)


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def ratio_table(samples: list[Sample]) -> Table:
    rows = []
    for step in STEPS:
        bv, peer = _get(samples, BV, step), best_peer(samples, step)
        if bv is None or peer is None or not bv.ok:
            continue
        rows.append(
            [
                step,
                f"{peer.tool} ({peer.wall:.2f} s)",
                _ratio(bv.wall, peer.wall),
                _ratio(bv.cpu, peer.cpu),
                _ratio(bv.rss_kib, peer.rss_kib),
                _ratio(bv.stored, peer.stored) if "restore" not in step else "-",
                _ratio(bv.allocated, peer.allocated) if "restore" in step else "-",
            ]
        )
    headers = ["step", "best peer", "wall", "CPU", "peak RSS", "stored Δ", "restored allocated"]
    return Table("bootvault / best peer (the peer with the lowest wall time at that step)", headers, rows)


def targets_table(samples: list[Sample], changed_b: int, source_alloc_a: int | None) -> Table:
    def get(step: str) -> Sample | None:
        s = _get(samples, BV, step)
        return s if s is not None and s.ok else None

    rows: list[list[str]] = []

    def add(
        name: str,
        limit: float,
        bv: Sample | None,
        ref: float | None,
        ref_name: str,
        value: Callable[[Sample], float | None],
    ) -> None:
        v = value(bv) if bv is not None else None
        if v is None or ref is None or ref == 0:
            rows.append([name, "-", f"<= {limit:g}", ref_name, "n/a"])
            return
        r = v / ref
        rows.append([name, f"{r:.3f}", f"<= {limit:g}", ref_name, "PASS" if r <= limit else "FAIL"])

    full_peer, b_peer, r_peer = (
        best_peer(samples, "full"),
        best_peer(samples, "incr-B"),
        best_peer(samples, "restore-A"),
    )
    full = get("full")

    def peer_ref(p: Sample | None, attr: str) -> tuple[float | None, str]:
        return (
            (None, "no peer")
            if p is None
            else (getattr(p, attr), f"{p.tool} {attr} {getattr(p, attr):.2f} s")
        )

    add("full: wall", 0.4, full, *peer_ref(full_peer, "wall"), lambda s: s.wall)
    cpu_ref, cpu_name = peer_ref(full_peer, "cpu")
    lowest = min(
        (p for p in samples if p.tool != BV and p.step == "full" and p.ok), key=lambda p: p.cpu, default=None
    )
    if lowest is not None and lowest is not full_peer:
        cpu_name += f" (lowest peer CPU: {lowest.tool} {lowest.cpu:.2f} s)"
    add("full: CPU time", 1.0, full, cpu_ref, cpu_name, lambda s: s.cpu)
    add("incr-B: wall", 0.3, get("incr-B"), *peer_ref(b_peer, "wall"), lambda s: s.wall)
    add("incr-B: wall (live-volume target)", 0.1, get("incr-B"), *peer_ref(b_peer, "wall"), lambda s: s.wall)
    add(
        "incr-B: stored Δ / bytes changed",
        2.0,
        get("incr-B"),
        float(changed_b),
        f"changed {fmt_mib(changed_b)} MiB",
        lambda s: s.stored,
    )
    full_stored = full.stored if full is not None else None
    add(
        "incr-A: stored Δ / full stored",
        0.3,
        get("incr-A"),
        float(full_stored) if full_stored else None,
        f"bootvault full {fmt_mib(full_stored)} MiB",
        lambda s: s.stored,
    )
    # The restored file is the new volume's file in the pool (as a peer's restore writes a file);
    # exporting it elsewhere is an extra copy, shown on its own row.
    add(
        "restore-A: wall (restore into a new volume)",
        0.5,
        get("restore-A"),
        *peer_ref(r_peer, "wall"),
        lambda s: float(s.extra["restore_wall_s"]) if "restore_wall_s" in s.extra else None,
    )
    rv = get("restore-A")
    if rv is not None and r_peer is not None and "restore_wall_s" in rv.extra:
        rows.append(
            [
                "restore-A: wall of restore + export to a file (information)",
                f"{rv.wall / r_peer.wall:.3f}",
                "-",
                f"{r_peer.tool} wall {r_peer.wall:.2f} s",
                "-",
            ]
        )
    add(
        "restore-A: allocated / source allocated",
        1.05,
        get("restore-A"),
        float(source_alloc_a) if source_alloc_a else None,
        f"source {fmt_mib(source_alloc_a)} MiB",
        lambda s: s.allocated if s.verified else None,
    )
    restore = _get(samples, BV, "restore-A")
    if restore is not None and restore.ok:
        rows.append(
            [
                "restore-A: restored image bit-exact",
                "-",
                "sha256 equal",
                "source after A",
                "PASS" if restore.verified else "FAIL",
            ]
        )
    headers = ["target", "bootvault ratio", "limit", "reference", "result"]
    return Table("Targets", headers, rows)


def print_tables(tables: list[Table]) -> None:
    console = Console(width=200)
    for t in tables:
        console.print(t.rich())
        console.print()
