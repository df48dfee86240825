"""Access keys of the edge (pure: no I/O): the admin key, per-project read keys and the metrics key.

- ``TRACKPIPE_ADMIN_KEY``: the admin API, every report of every project, and ``/metrics``.
- ``TRACKPIPE_READ_KEYS="project=key,project2=key2"``: a key reads the reports of the projects it is
  listed with (the same key may be listed for several projects) and nothing else.
- ``TRACKPIPE_METRICS_KEY``: ``/metrics`` only (for Prometheus).

Every key is at least :data:`MIN_KEY_LENGTH` visible ASCII characters. Keys are kept as SHA-256 digests
and a presented key is compared with every configured digest with ``hmac.compare_digest``: the time taken
depends neither on which key matched nor on how long the configured keys are.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

MIN_KEY_LENGTH = 32
_KEY_RE = re.compile(r"^[\x21-\x7e]+$")  # visible ASCII: no spaces, nothing a header could mangle
_HOW = "generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def key_problem(name: str, key: str) -> str | None:
    """Why ``key`` (the value of setting ``name``) is not acceptable, or None. Never quotes the key."""
    if len(key) < MIN_KEY_LENGTH:
        return f"{name} must be at least {MIN_KEY_LENGTH} characters long (it has {len(key)}); {_HOW}"
    if not _KEY_RE.match(key):
        return f"{name} may hold only visible ASCII characters (no spaces); {_HOW}"
    return None


def check_key(name: str, key: str) -> str:
    problem = key_problem(name, key)
    if problem:
        raise ValueError(problem)
    return key


def parse_read_keys(text: str, name: str = "TRACKPIPE_READ_KEYS") -> dict[str, str]:
    """``"project=key,project2=key2"`` → {project: key}. Raises ValueError naming the bad item (by position
    and project, never the key)."""
    keys: dict[str, str] = {}
    for n, item in enumerate((x.strip() for x in text.split(",")), start=1):
        if not item:
            continue
        project, sep, key = item.partition("=")
        project, key = project.strip(), key.strip()
        if not sep or not project:
            raise ValueError(f"{name}: item {n} is not 'project=key'")
        if project in keys:
            raise ValueError(f"{name}: project {project!r} is listed twice")
        keys[project] = check_key(f"{name} (key of project {project!r})", key)
    return keys


def digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


@dataclass(frozen=True)
class Grant:
    """What a presented credential may read: every project (admin), or the listed ones."""

    admin: bool = False
    metrics: bool = False
    projects: frozenset[str] = frozenset()

    def reads(self, project: str) -> bool:
        return self.admin or project in self.projects

    @property
    def reads_anything(self) -> bool:
        return self.admin or bool(self.projects)


#: What a loopback client gets while no key is configured (``make run`` on 127.0.0.1).
LOCAL_GRANT = Grant(admin=True, metrics=True)
NOTHING = Grant()


class AccessKeys:
    """The configured keys (checked here: each at least :data:`MIN_KEY_LENGTH` visible characters)."""

    def __init__(
        self,
        admin: str | None = None,
        read: Mapping[str, str] | None = None,
        metrics: str | None = None,
    ):
        for name, key in (("TRACKPIPE_ADMIN_KEY", admin), ("TRACKPIPE_METRICS_KEY", metrics)):
            if key is not None:
                check_key(name, key)
        read = dict(read or {})
        for project, key in read.items():
            check_key(f"TRACKPIPE_READ_KEYS (key of project {project!r})", key)
        self.has_admin = bool(admin)
        self.has_read = bool(read)
        self.has_metrics = bool(metrics)
        self._admin = digest(admin.encode()) if admin else None
        self._metrics = digest(metrics.encode()) if metrics else None
        self._read = [(project, digest(key.encode())) for project, key in read.items()]

    @property
    def reads_need_key(self) -> bool:
        """False only with neither an admin key nor a read key: reports are then for loopback clients."""
        return self.has_admin or self.has_read

    @property
    def metrics_need_key(self) -> bool:
        return self.has_admin or self.has_metrics

    def grant(self, presented: bytes) -> Grant:
        """What ``presented`` (the bearer credential's bytes) may do. Compares with every key, always."""
        given = digest(presented)
        admin = self._admin is not None and hmac.compare_digest(given, self._admin)
        metrics = self._metrics is not None and hmac.compare_digest(given, self._metrics)
        projects = frozenset([p for p, d in self._read if hmac.compare_digest(given, d)])
        return Grant(admin=admin, metrics=metrics or admin, projects=projects)
