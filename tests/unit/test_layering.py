"""Import arrows the layers keep. The console is a client of the service layer, like api/: none
of their modules imports the store, the engine, the pool or SQLAlchemy (so no handler can run SQL
or engine calls). The service reaches the data only through the engine's Repository: no service
module imports the blob store, and nothing outside engine/repository.py reads a Repository's
private parts."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import bootvault
import bootvault.console
import bootvault.service
from bootvault.blobstore import LocalBlobStore
from bootvault.engine.keys import KeyRing
from bootvault.engine.repository import Repositories

FORBIDDEN = ("bootvault.store", "bootvault.engine", "bootvault.pool", "bootvault.blobstore", "sqlalchemy")
SRC = Path(bootvault.__file__).parent
REPOSITORY = SRC / "engine" / "repository.py"


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def _importing(package: Path, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    return {
        m.name: sorted(i for i in _imports(m) if i.startswith(forbidden))
        for m in sorted(package.glob("*.py"))
        if any(i.startswith(forbidden) for i in _imports(m))
    }


def test_console_imports_no_store_engine_or_sql() -> None:
    modules = sorted(Path(bootvault.console.__file__).parent.glob("*.py"))
    assert len(modules) >= 6
    assert _importing(Path(bootvault.console.__file__).parent, FORBIDDEN) == {}


def test_api_imports_no_store_engine_or_pool() -> None:
    """api/ knows the wire and calls the service; records and errors come from domain/."""
    api = SRC / "api"
    assert len(list(api.glob("*.py"))) >= 10
    assert _importing(api, FORBIDDEN) == {}


def test_no_service_module_imports_the_blob_store() -> None:
    service = Path(bootvault.service.__file__).parent
    assert len(list(service.glob("*.py"))) >= 20
    assert _importing(service, ("bootvault.blobstore",)) == {}


def _private_parts() -> set[str]:
    """The attributes engine/repository.py's classes set on self with a leading underscore."""
    return {
        node.attr
        for node in ast.walk(ast.parse(REPOSITORY.read_text()))
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
        and node.attr.startswith("_")
        and isinstance(node.ctx, ast.Store)
    }


def test_a_repository_holds_only_private_parts(tmp_path: Path) -> None:
    repositories = Repositories(LocalBlobStore(tmp_path / "store"), 64 << 10, 2)
    repo = repositories.scope(KeyRing(os.urandom(32), {}.get).data_keys("ocid1.tenancy.oc1..t", None), {})
    for held in (repositories, repo):
        assert vars(held) and all(name.startswith("_") for name in vars(held))
        assert set(vars(held)) <= _private_parts()


def test_nothing_outside_the_repository_reads_its_private_parts() -> None:
    private = _private_parts()
    assert {"_store", "_parts", "_condemned"} <= private
    readers = {}
    for path in sorted(SRC.rglob("*.py")):
        if path == REPOSITORY:
            continue
        names = {
            node.attr
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Attribute)
            and node.attr in private
            and not (isinstance(node.value, ast.Name) and node.value.id == "self")
        }
        if names:
            readers[str(path.relative_to(SRC))] = sorted(names)
    assert readers == {}
