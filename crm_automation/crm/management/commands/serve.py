"""Run the web server and a django-q2 worker cluster together; Ctrl-C stops both."""

import os
import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Start runserver and qcluster side by side (what `make run` uses)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--addr", default=f"127.0.0.1:{os.environ.get('PORT', '8000')}")

    def handle(self, *args, addr: str, **options) -> None:
        manage = [sys.executable, "manage.py"]
        children = [
            subprocess.Popen([*manage, "qcluster"], start_new_session=True),
            subprocess.Popen([*manage, "runserver", addr, "--noreload"], start_new_session=True),
        ]
        self.stdout.write(self.style.SUCCESS(f"Web server on http://{addr}/admin/ and a django-q2 "
                                             "cluster are running. Press Ctrl-C to stop both."))
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping and all(c.poll() is None for c in children):
                time.sleep(0.2)
        finally:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)  # qcluster stops its own workers
            deadline = time.monotonic() + 15
            for child in children:
                try:
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    os.killpg(child.pid, signal.SIGKILL)
            self.stdout.write("Stopped.")
        failed = [c for c in children if c.returncode not in (0, -signal.SIGTERM, None)]
        if failed and not stopping:
            raise SystemExit("A child process exited unexpectedly; both were stopped.")
