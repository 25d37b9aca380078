"""Production start (`make prod`): gunicorn and N django-q2 clusters, supervised together.

1. refuse to start with DEBUG on;
2. `check --deploy --fail-level WARNING`: an unsafe setting stops start-up before anything
   touches the database;
3. `migrate --noinput` (skip with --no-migrate on hosts that should not migrate), then
   `collectstatic --noinput` (hashed names and compressed copies for whitenoise);
4. start gunicorn (`config.wsgi`, WEB_CONCURRENCY workers, bound to 0.0.0.0:PORT, access log on
   stdout) and WORKER_PROCESSES `qcluster` processes, each in a session of its own so that a
   Ctrl-C in the terminal reaches only this process, which then stops them in order;
5. SIGTERM or SIGINT: SIGTERM to every child (gunicorn lets its requests finish; a qcluster
   stops its pusher and lets its workers finish their tasks), SIGKILL to what is left after
   stop_seconds(). A child that exits on its own stops the others too, and this command exits
   non-zero, so the service manager restarts the whole set.
"""

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from config.env import env_int

# gunicorn waits this long for requests in flight after SIGTERM.
GRACEFUL_SECONDS = 30


def stop_seconds() -> int:
    """How long children get to stop before SIGKILL: gunicorn's graceful timeout, or a task's
    drain budget plus its last email (connect and send), whichever is longer. A run cut off
    even then is safe: its lease expires and another worker resumes it."""
    task = settings.AUTOMATION["DRAIN_TIME_BUDGET"] + 2 * settings.EMAIL_TIMEOUT
    return max(GRACEFUL_SECONDS, task) + 5


class Command(BaseCommand):
    help = "Production start: deploy checks, migrate, collectstatic, then gunicorn and qcluster processes."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--no-migrate", action="store_true",
                            help="Do not run migrations (another host or a release step runs them).")

    def handle(self, *args, no_migrate: bool, **options) -> None:
        if settings.DEBUG:
            raise CommandError("serve_prod refuses to start with DEBUG on: set DEBUG=0 (and SECRET_KEY, "
                               "ALLOWED_HOSTS; see README, Production). For development use `make run`.")
        port = env_int("PORT", 8000, minimum=1)
        web_workers = env_int("WEB_CONCURRENCY", 2, minimum=1)
        clusters = env_int("WORKER_PROCESSES", 1, minimum=0)

        self.stdout.write("== Deploy checks (check --deploy)")
        call_command("check", deploy=True, fail_level="WARNING")
        if not no_migrate:
            self.stdout.write("== Migrating the database")
            call_command("migrate", interactive=False, verbosity=1)
        self.stdout.write("== Collecting static files")
        call_command("collectstatic", interactive=False, verbosity=0)
        connections.close_all()  # the children open their own

        gunicorn = [sys.executable, "-m", "gunicorn", "config.wsgi:application",
                    "--config", "python:config.gunicorn",  # its logs in our format (LOG_FORMAT)
                    "--bind", f"0.0.0.0:{port}", "--workers", str(web_workers),
                    "--graceful-timeout", str(GRACEFUL_SECONDS),
                    "--access-logfile", "-", "--error-logfile", "-"]
        qcluster = [sys.executable, "manage.py", "qcluster"]
        self.stdout.write(f"== Starting gunicorn ({web_workers} workers on 0.0.0.0:{port}) and {clusters} "
                          f"qcluster process{'es' if clusters != 1 else ''} "
                          f"({settings.Q_CLUSTER['workers']} workers each)")
        sys.stdout.flush()
        # From here on a signal only asks to stop: this process must outlive its children.
        self.stopping = False
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGTERM, self._stop)
        children = [subprocess.Popen(gunicorn, cwd=settings.BASE_DIR, start_new_session=True)]
        children += [subprocess.Popen(qcluster, cwd=settings.BASE_DIR, start_new_session=True)
                     for _ in range(clusters)]
        self._supervise(children)

    def _stop(self, *_) -> None:
        self.stopping = True

    def _supervise(self, children: list[subprocess.Popen]) -> None:
        try:
            while not self.stopping and all(c.poll() is None for c in children):
                time.sleep(0.2)
        finally:
            self.stdout.write("== Stopping")
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + stop_seconds()
            for child in children:
                try:
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self.stderr.write(f"{name(child)} (pid {child.pid}) did not stop in time; killing it.")
                    os.killpg(child.pid, signal.SIGKILL)  # its session: its own workers too
                    child.wait()
            self.stdout.write("Stopped.")
        if not self.stopping:
            died = ", ".join(f"{name(c)} (exit code {c.returncode})" for c in children
                             if c.returncode not in (0, -signal.SIGTERM))
            raise CommandError(f"A process exited unexpectedly ({died or 'with exit code 0'}); the others "
                               "were stopped.")


def name(child: subprocess.Popen) -> str:
    return "gunicorn" if isinstance(child.args, list) and "gunicorn" in child.args else "qcluster"
