"""The console is a client of the service layer, like api/: none of its modules imports the
store, the engine, the pool or SQLAlchemy (so no handler can run SQL or engine calls)."""

from __future__ import annotations

import ast
from pathlib import Path

import bootvault.console

FORBIDDEN = ("bootvault.store", "bootvault.engine", "bootvault.pool", "bootvault.blobstore", "sqlalchemy")


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_console_imports_no_store_engine_or_sql() -> None:
    modules = sorted(Path(bootvault.console.__file__).parent.glob("*.py"))
    assert len(modules) >= 6
    bad = {
        m.name: sorted(i for i in _imports(m) if i.startswith(FORBIDDEN))
        for m in modules
        if any(i.startswith(FORBIDDEN) for i in _imports(m))
    }
    assert bad == {}
