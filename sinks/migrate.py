"""Apply the versioned DDL files under ``schemas/clickhouse`` idempotently.

Files are named ``NNNN_description.sql`` and applied in order; each applied version is recorded in
``schema_migrations``, so re-running is a no-op and a newer release applies only what is new. Every
statement is also written ``IF NOT EXISTS`` so a half-applied file can be re-run safely.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from sinks.backend import ClickHouseBackend

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version UInt32,
    name String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY version
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def load_migrations() -> list[Migration]:
    folder = resources.files("schemas") / "clickhouse"
    found = []
    for entry in folder.iterdir():
        m = _NAME.match(entry.name)
        if not m:
            continue
        text = entry.read_text(encoding="utf-8")
        statements = tuple(s.strip() for s in _split(text) if s.strip())
        found.append(Migration(int(m.group(1)), m.group(2), statements))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions in schemas/clickhouse: {versions}")
    return found


def _split(text: str) -> list[str]:
    """Statements are separated by a line that ends with ';'. Comment lines are dropped."""
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("--")]
    return re.split(r";\s*(?:\n|$)", "\n".join(lines))


def applied_versions(backend: ClickHouseBackend) -> set[int]:
    backend.command(_LEDGER)
    return {int(r[0]) for r in backend.query("SELECT version FROM schema_migrations FINAL")}


def migrate(backend: ClickHouseBackend, upto: int | None = None) -> list[Migration]:
    """Create the database objects; return the migrations applied by this call. ``upto``: stop after
    that version (tests of upgrades; an operator staging a release)."""
    done = applied_versions(backend)
    applied = []
    for mig in load_migrations():
        if mig.version in done or (upto is not None and mig.version > upto):
            continue
        for stmt in mig.statements:
            backend.command(stmt)
        backend.command(
            "INSERT INTO schema_migrations (version, name) VALUES ({v:UInt32}, {n:String})",
            {"v": mig.version, "n": mig.name},
        )
        applied.append(mig)
    return applied
