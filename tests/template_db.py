"""The SQLite test database of each pytest-xdist worker, copied from a migrated template.

Migrating a new test database took each worker about 3 s of CPU (every app's migrations, the
third-party ones too), before its first test. The template is migrated once, by whichever
worker gets there first (the others wait for it), and kept in VAR_DIR under a name made from
the migrations it holds: the contents of every installed app's migration files and Django's
version. A changed or new migration names a new template, so a stale one is never used.
Each worker copies it to its own test database and pytest-django keeps that copy (keepdb):
Django's `migrate` then finds everything applied. PostgreSQL is left as pytest-django does it.
"""

import fcntl
import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import django
from django.apps import apps
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


def copy_from_template(test_database: str) -> None:
    """Make `test_database` a copy of the migrated template (migrating the template first if
    no worker has yet)."""
    folder = Path(settings.VAR_DIR)  # (the project's var/, not the worker's own: see conftest)
    folder.mkdir(parents=True, exist_ok=True)
    template = folder / f"test-template-{_migrations_key()}.sqlite3"
    with open(folder / "test-template.lock", "w") as lock:
        # One worker migrates, the others wait for it; and no run of other migrations deletes
        # this template while a worker copies it (the copy takes some 50 ms).
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not template.exists():
            _migrate(template)
        for leftover in (test_database, f"{test_database}-wal", f"{test_database}-shm"):
            Path(leftover).unlink(missing_ok=True)
        copy_database(template, test_database)


def copy_database(source: str | Path, target: str | Path) -> None:
    """A consistent copy of a SQLite database, what its write-ahead log holds included (SQLite's
    backup API); the source is opened read-only, so a missing one is an error, not a new file."""
    reader = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    with sqlite3.connect(target) as writer:
        reader.backup(writer)
    reader.close()


def _migrate(template: Path) -> None:
    for old in template.parent.glob("test-template-*.sqlite3*"):
        old.unlink()  # templates of migrations that have changed since (with their -wal, -shm)
    partial = template.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{partial}", "VAR_DIR": str(template.parent)}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=300)
    partial.rename(template)


def _migrations_key() -> str:
    digest = hashlib.sha256(django.get_version().encode())
    for app in sorted(apps.get_app_configs(), key=lambda a: a.label):
        folder = Path(app.path) / "migrations"
        for path in sorted(folder.glob("*.py")) if folder.is_dir() else ():
            digest.update(f"{app.label}/{path.name}".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
