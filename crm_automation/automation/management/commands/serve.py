"""Run the web server and a django-q2 worker cluster together; Ctrl-C stops both.

Start-up says what it is doing, waits until the web server answers and the workers have run a
task, then prints where to log in (and the demo password seed_demo generated, if any).
"""

import os
import signal
import subprocess
import sys
import time
import urllib.request

from django.core.management.base import BaseCommand

from crm_automation.automation.management.commands.seed_demo import demo_password_file

READY_TIMEOUT = 60


class Command(BaseCommand):
    help = "Start runserver and qcluster side by side (what `make run` uses)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--addr", default=f"127.0.0.1:{os.environ.get('PORT', '8000')}")

    def handle(self, *args, addr: str, **options) -> None:
        manage = [sys.executable, "manage.py"]
        # Links in emails, alerts and MCP answers name this server unless SITE_URL says otherwise.
        os.environ.setdefault("SITE_URL", f"http://{addr}")
        self.stdout.write("Starting the web server and the worker cluster…")
        children = [
            subprocess.Popen([*manage, "qcluster"], start_new_session=True),
            subprocess.Popen([*manage, "runserver", addr, "--noreload"], start_new_session=True),
        ]
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            self._announce_when_ready(addr, children, lambda: stopping)
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

    def _announce_when_ready(self, addr: str, children, stopping) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        web = workers = False
        task_id = None
        while not (web and workers) and not stopping() and time.monotonic() < deadline:
            if any(c.poll() is not None for c in children):
                return
            web = web or self._web_answers(addr)
            task_id, workers = self._workers_answer(task_id)
            time.sleep(0.3)
        if not (web and workers):
            if not stopping():
                self.stderr.write(f"Not ready after {READY_TIMEOUT} s (web server: {'up' if web else 'down'}, "
                                  f"workers: {'up' if workers else 'not answering'}); still trying.")
            return
        self.stdout.write(self.style.SUCCESS(f"\nReady: http://{addr}/crm/automation/  {self._login_hint()}"))
        self.stdout.write(f"Records and settings (Django admin): http://{addr}/admin/")
        self.stdout.write(f"API: http://{addr}/api/v1/ (docs: http://{addr}/api/v1/docs/)")
        self.stdout.write(f"MCP server for AI assistants: http://{addr}/mcp (README: MCP)")
        self.stdout.write("Web server and workers are running. Press Ctrl-C to stop both.\n")

    @staticmethod
    def _web_answers(addr: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://{addr}/admin/login/", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    @staticmethod
    def _workers_answer(task_id: str | None) -> tuple[str | None, bool]:
        """Queue one tiny task and see a worker finish it: the cluster really works."""
        from django_q.tasks import async_task, result

        try:
            if task_id is None:
                task_id = async_task("math.floor", 1.5, q_options={"timeout": 10})
            return task_id, result(task_id) == 1
        except Exception:  # the broker is not up yet
            return None, False

    @staticmethod
    def _login_hint() -> str:
        path = demo_password_file()
        if os.environ.get("DEMO_PASSWORD"):
            return "user: demo  password: as set in DEMO_PASSWORD"
        if path.exists():
            return f"user: demo  password: {path.read_text().strip()}"
        return "user: demo"
