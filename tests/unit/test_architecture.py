"""The pure core stays pure: domain modules import no I/O library, and topics are co-partitioned."""

import ast
from pathlib import Path

import pytest

from shared.topics import (
    ALL_TOPICS,
    CUSTOMER_ALLOWED,
    CUSTOMER_LOG,
    CUSTOMER_PARTITIONS,
    SEGMENT_MEMBERSHIP,
    topic_name,
)

ROOT = Path(__file__).resolve().parents[2]
IO_LIBRARIES = {"aiokafka", "asyncpg", "faust", "fastapi", "starlette", "httpx", "psycopg", "yoyo", "uvicorn"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    return roots


PURE_MODULES = sorted(
    [
        *ROOT.glob("services/*/domain.py"),
        *(ROOT / "services/segments" / name for name in ("evaluation.py", "digest.py", "cache.py")),
    ]
)


@pytest.mark.parametrize("domain", PURE_MODULES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_domain_modules_import_no_io_library(domain: Path) -> None:
    assert not imported_roots(domain) & IO_LIBRARIES


@pytest.mark.parametrize(
    "contract", ["events.py", "rules.py", "errors.py", "topics.py", "serialization.py", "demo.py"]
)
def test_the_wire_contract_imports_no_io_library(contract: str) -> None:
    assert not imported_roots(ROOT / "shared" / contract) & IO_LIBRARIES


def test_customer_keyed_topics_share_one_partition_count() -> None:
    for spec in (CUSTOMER_LOG, CUSTOMER_ALLOWED, SEGMENT_MEMBERSHIP):
        assert spec.partitions == CUSTOMER_PARTITIONS


def test_topic_names_are_unique_and_prefixed_for_isolation() -> None:
    names = [spec.name for spec in ALL_TOPICS]
    assert len(set(names)) == len(names)
    assert topic_name(CUSTOMER_LOG, "test-1.") == "test-1.customer.log"


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("service", sorted(p.name for p in (ROOT / "services").iterdir() if p.is_dir()))
def test_a_service_imports_no_other_service(service: str) -> None:
    """What one service reads of another goes through shared/ (a read port, e.g. shared/profiles.py)."""
    for path in (ROOT / "services" / service).rglob("*.py"):
        others = {
            m for m in imported_modules(path) if m.startswith("services.") and m.split(".")[1] != service
        }
        assert not others, f"{path.relative_to(ROOT)} imports {sorted(others)}"
