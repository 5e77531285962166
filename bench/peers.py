"""restic and borg, driven with the anchors' exact commands (Debian packages, installed when missing)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from measure import BenchError, Sample, du_bytes, sync, timed

PASSWORD = "benchpass"
PACKAGES = {"restic": "restic", "borg": "borgbackup", "/usr/bin/time": "time"}


def ensure_installed(need_peers: bool) -> list[str]:
    """apt-get install whatever of restic / borgbackup / time is missing; return what was installed."""
    wanted = PACKAGES if need_peers else {"/usr/bin/time": "time"}
    missing = sorted({pkg for exe, pkg in wanted.items() if shutil.which(exe) is None})
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        print(f"installing Debian packages: {' '.join(missing)}", flush=True)
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", *missing], env=env, check=True)
    return missing


def versions() -> dict[str, str]:
    out = {}
    for name, cmd in {"restic": ["restic", "version"], "borg": ["borg", "--version"]}.items():
        if shutil.which(cmd[0]):
            out[name] = subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
    return out


@dataclass
class Peer:
    """One peer configuration with its own repository under work/."""

    name: str
    work: Path

    @property
    def repo(self) -> Path:
        return self.work / f"repo-{self.name}"

    @property
    def logs(self) -> Path:
        return self.work / "logs"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RESTIC_PASSWORD": PASSWORD,
            "BORG_PASSPHRASE": PASSWORD,
            "BORG_DISPLAY_PASSPHRASE": "no",
            "RESTIC_CACHE_DIR": str(self.work / "cache-restic"),
            "BORG_BASE_DIR": str(self.work / "borgbase"),
        }

    def init_cmd(self) -> list[str]:
        raise NotImplementedError

    def backup_cmd(self, image: Path, archive: str) -> list[str]:
        raise NotImplementedError

    def restore_cmd(self, archive: str, target: Path) -> list[str]:
        raise NotImplementedError

    def init(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        timed(self.init_cmd(), self.logs / f"{self.name}.init.log", env=self.env())

    def backup(self, image: Path, step: str, archive: str) -> Sample:
        before = du_bytes(self.repo)
        sync()
        t = timed(self.backup_cmd(image, archive), self.logs / f"{self.name}.{step}.log", env=self.env())
        after = du_bytes(self.repo)
        return Sample(self.name, step, t.wall, t.cpu, t.rss_kib, stored=after - before, repo_total=after)

    def restore(self, image: Path, archive: str, step: str) -> tuple[Sample, Path]:
        """Restore archive into a fresh dir; return the sample and the restored image file."""
        target = self.work / f"restore-{self.name}"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        sync()
        t = timed(
            self.restore_cmd(archive, target),
            self.logs / f"{self.name}.{step}.log",
            cwd=target,
            env=self.env(),
        )
        restored = target / str(image.resolve()).lstrip("/")
        if not restored.is_file():
            raise BenchError(f"{self.name}: restored file not found at {restored}")
        return Sample(self.name, step, t.wall, t.cpu, t.rss_kib), restored


class Restic(Peer):
    def init_cmd(self) -> list[str]:
        return ["restic", "-r", str(self.repo), "init", "--repository-version", "2"]

    def backup_cmd(self, image: Path, archive: str) -> list[str]:
        return ["restic", "-r", str(self.repo), "backup", str(image.resolve())]

    def restore_cmd(self, archive: str, target: Path) -> list[str]:
        return ["restic", "-r", str(self.repo), "restore", "latest", "--target", str(target)]


class Borg(Peer):
    """borg 1.x, repokey-blake2, zstd level 3; chunker 'fixed' (fixed,4194304 --sparse) or 'buzhash'."""

    def __init__(self, name: str, work: Path, fixed: bool) -> None:
        super().__init__(name, work)
        self.fixed = fixed

    def init_cmd(self) -> list[str]:
        return ["borg", "init", "-e", "repokey-blake2", str(self.repo)]

    def backup_cmd(self, image: Path, archive: str) -> list[str]:
        chunker = ["--chunker-params", "fixed,4194304", "--sparse"] if self.fixed else []
        return [
            "borg",
            "create",
            "--stats",
            "-C",
            "zstd,3",
            *chunker,
            f"{self.repo}::{archive}",
            str(image.resolve()),
        ]

    def restore_cmd(self, archive: str, target: Path) -> list[str]:
        return ["borg", "extract", "--sparse", f"{self.repo}::{archive}"]


def make_peers(work: Path, names: list[str]) -> list[Peer]:
    known: dict[str, Peer] = {
        "restic": Restic("restic", work),
        "borg-fixed4m": Borg("borg-fixed4m", work, fixed=True),
        "borg-buzhash": Borg("borg-buzhash", work, fixed=False),
    }
    return [known[n] for n in names if n in known]


PEER_NAMES = ["restic", "borg-fixed4m", "borg-buzhash"]
