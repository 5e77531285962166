"""The bare reference for bench/api.py: a Starlette app on uvicorn with the same server options
as `bootvault serve` (httptools, uvloop, no access log), answering a backup-shaped JSON document
(GET /item) or a list of 25 of them (GET /list), serialised on every request.

    python bench/bareapp.py PORT [PROCESSES]

PROCESSES > 1 runs that many worker processes on the port (uvicorn's supervisor), as
`bootvault serve --processes N` does, so bench/api.py compares like with like.
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

ITEM = {
    "id": "ocid1.bootvolumebackup.oc1.local-1.aaaaaaaabenchbenchbenchbenchbenchbenchbenchbenchbench",
    "compartmentId": "ocid1.compartment.oc1..aaaaaaaabenchbenchbenchbenchbenchbenchbenchbenchbench",
    "bootVolumeId": "ocid1.bootvolume.oc1.local-1.aaaaaaaabenchbenchbenchbenchbenchbenchbenchbenchbench",
    "displayName": "bench-000001",
    "lifecycleState": "AVAILABLE",
    "type": "INCREMENTAL",
    "sourceType": "MANUAL",
    "timeCreated": "2026-01-01T00:00:00.000Z",
    "timeRequestReceived": "2026-01-01T00:00:00.000Z",
    "sizeInGBs": 1,
    "uniqueSizeInGBs": 1,
    "percentComplete": 100,
    "freeformTags": {},
    "definedTags": {},
    "systemTags": {"bootvault": {"uniqueSizeBytes": "12345", "logicalSizeBytes": "1073741824"}},
}


async def item(request: Request) -> JSONResponse:
    return JSONResponse(ITEM, headers={"etag": "0123456789abcdef", "opc-request-id": "X"})


async def items(request: Request) -> JSONResponse:
    return JSONResponse([ITEM] * 25, headers={"opc-request-id": "X"})


app = Starlette(routes=[Route("/item", item), Route("/list", items)])

if __name__ == "__main__":
    processes = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    uvicorn.run(
        "bareapp:app" if processes > 1 else app,  # worker processes import the app by name
        app_dir=str(Path(__file__).resolve().parent),
        workers=processes,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        http="httptools",
        loop="uvloop",
        log_level="warning",
        access_log=False,
    )
