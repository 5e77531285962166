"""Access lines (logs.access) are the JSON line logger.info would write, whether they take the
direct path (setup_logging's handler alone) or go through the logging machinery (any other
handler attached)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EMIT = """
import io, logging, sys
from bootvault import logs
logs.setup_logging()
log = logging.getLogger("bootvault.api")
fields = {"status": 200, "opcRequestId": "RID-1", "operation": "GetBootVolumeBackup", "ms": 1.5}
logs.access(log, "GET /x -> 200", fields, deferrable=True)  # direct
captured = io.StringIO()
logging.getLogger().addHandler(logging.StreamHandler(captured))  # now a record for both
logs.access(log, "GET /x -> 200", fields, deferrable=True)
assert captured.getvalue() == "GET /x -> 200\\n", captured.getvalue()
logging.getLogger().setLevel("WARNING")
logs.access(log, "GET /x -> 200", fields, deferrable=True)  # neither path writes below the level
"""


def test_the_direct_access_line_is_the_records_line(tmp_path: Path) -> None:
    err = tmp_path / "stderr"
    with open(err, "wb") as out:
        subprocess.run([sys.executable, "-c", EMIT], stderr=out, check=True, timeout=60)
    lines = [json.loads(line) for line in err.read_text().splitlines()]
    assert len(lines) == 2, err.read_text()
    direct, record = lines
    assert direct.pop("time")[:2] == record.pop("time")[:2] == "20"
    assert (
        direct
        == record
        == {
            "level": "INFO",
            "logger": "bootvault.api",
            "message": "GET /x -> 200",
            "status": 200,
            "opcRequestId": "RID-1",
            "operation": "GetBootVolumeBackup",
            "ms": 1.5,
        }
    )
