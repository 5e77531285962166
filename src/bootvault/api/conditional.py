"""Handlers that change one resource under its If-Match: every delete and compartment move is
the same call with another service function, so each is made here once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from bootvault.api.common import Call, Handler
from bootvault.api.wire import ChangeCompartmentDetails


def deleter(delete: Callable[..., Any], id_param: str, *, status: int = 204) -> Handler:
    """DELETE of the resource named by path parameter `id_param`, answered `status`."""

    async def handler(call: Call) -> Response:
        await call.run(delete, call.path(id_param), call.header("if-match"))
        return Response(status_code=status)

    return handler


def compartment_mover(change: Callable[..., Any], id_param: str) -> Handler:
    """POST …/actions/changeCompartment of the resource named by path parameter `id_param`."""

    async def handler(call: Call) -> Response:
        d = await call.parse(ChangeCompartmentDetails)
        await call.run(change, call.path(id_param), d.compartment_id, call.header("if-match"))
        return Response(status_code=204)

    return handler
