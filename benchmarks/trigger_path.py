#!/usr/bin/env python
"""How far one trigger travels through the project's code on its way to "done".

    cd <the tree to measure> && /work/main/.venv/bin/python /work/main/benchmarks/trigger_path.py

The tree measured is the current directory's (when it holds manage.py, else this file's), so the
same script measures an older checkout too; the first line printed is the `crm_automation`
imported. In a fresh SQLite database (a temporary VAR_DIR, removed at the end), the fault
harness's data (benchmarks/chaos/data.py): one organization, one deal in "proposal" with a
contact, one activated workflow "deal moves to won: send an email to the deal's contact"
(Django's locmem email backend, nudges off). Then, traced with `sys.setprofile`, in process:
`deal_move_to_stage` to won, and what a worker does, `drain_events(fan_out=False)`, until the
run is completed and the email is sent.

Only call events of frames whose code lives under crm_automation/ count (not Django, not this
script), in the main thread (a lease's heartbeat thread is not followed). A warm-up trigger in
another organization runs first, untraced, so that imports and first-use caches are not part
of the path. Printed: distinct files; distinct functions (comprehensions and generator
expressions are part of their function); file switches (consecutive project calls in different
files); returns to a file already left (a switch into a file seen before); the 10 most frequent
switches. Run it on two trees to compare layouts; nothing here is timed.
"""

import importlib
import os
import shutil
import sys
import tempfile
from collections import Counter
from contextlib import nullcontext
from itertools import pairwise
from pathlib import Path
from types import FrameType, ModuleType

ROOT = Path.cwd() if (Path.cwd() / "manage.py").is_file() else Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # ahead of the virtualenv's editable install, which points at /work/main
VAR_DIR = Path(tempfile.mkdtemp(prefix="trigger_path_"))
os.environ.update(VAR_DIR=str(VAR_DIR), DATABASE_URL=f"sqlite:///{VAR_DIR / 'crm.sqlite3'}",
                  DJANGO_SETTINGS_MODULE="config.settings", AUTOMATION_NUDGE="0", LOG_LEVEL="WARNING",
                  EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend")

SEND_EMAIL = [{"type": "send_email", "config": {"to": "{{deal.contact.email}}", "subject": "Won: {{deal.title}}",
                                                "body": "Hi {{deal.contact.first_name}}"}}]
# Where the worker's tasks live: the layout after 8da02da first, the flat one before it.
TASK_MODULES = ("crm_automation.automation.runtime.tasks", "crm_automation.automation.tasks")
# Code blocks that belong to the function around them, not functions of their own.
INNER_BLOCKS = {"<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>"}
MAX_DRAINS = 10


def first_module(names: tuple[str, ...]) -> ModuleType:
    for name in names:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.startswith(exc.name):  # a missing dependency, not a layout
                raise
    raise SystemExit(f"none of {', '.join(names)} can be imported")


class CallRecorder:
    """A profile function keeping the project frames' call events, in order."""

    def __init__(self, package_dir: str) -> None:
        self.prefix = package_dir + os.sep
        self.cut = len(package_dir) - len("crm_automation")
        self.calls: list[tuple[str, str]] = []  # (file relative to the tree, qualified name)

    def __call__(self, frame: FrameType, event: str, arg: object) -> None:
        if event == "call" and frame.f_code.co_filename.startswith(self.prefix):
            self.calls.append((frame.f_code.co_filename[self.cut:], frame.f_code.co_qualname))

    def __enter__(self) -> "CallRecorder":
        sys.setprofile(self)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.setprofile(None)


def report(calls: list[tuple[str, str]]) -> None:
    files = [file for file, _ in calls]
    functions = {(file, name) for file, name in calls if name.rsplit(".", 1)[-1] not in INNER_BLOCKS}
    switches: Counter[tuple[str, str]] = Counter()
    returns = 0
    seen = set(files[:1])
    for before, after in pairwise(files):
        if before != after:
            switches[(before, after)] += 1
            returns += after in seen
            seen.add(after)
    print(f"project calls: {len(calls)}")
    print(f"distinct project files: {len(set(files))}")
    print(f"distinct project functions: {len(functions)}")
    print(f"file switches: {sum(switches.values())}")
    print(f"returns to a file already left: {returns}")
    if os.environ.get("TRIGGER_PATH_SEQUENCE"):  # the files in call order, repeats folded
        files = [f for f, _ in calls]
        print(" > ".join(f for i, f in enumerate(files) if i == 0 or files[i - 1] != f))
    print("top 10 file switches (crm_automation/ left out):")
    for (before, after), count in sorted(switches.items(), key=lambda item: (-item[1], item[0]))[:10]:
        print(f"  {count:4d}  {before.removeprefix('crm_automation/')} -> {after.removeprefix('crm_automation/')}")


def main() -> None:
    import django

    django.setup()
    from django.core import mail
    from django.core.management import call_command

    import crm_automation

    print(f"crm_automation: {crm_automation.__file__}")
    call_command("migrate", verbosity=0)

    from benchmarks.chaos.data import add_workflow, make_org
    from crm_automation.automation.models import RunStatus, WorkflowRun
    from crm_automation.crm.models import Deal
    from crm_automation.crm.services import deal_move_to_stage

    tasks = first_module(TASK_MODULES)
    print(f"worker task: {tasks.__name__}.drain_events")

    def win(slug: str, recorder: CallRecorder | None) -> int:
        """Move the organization's one deal to won and drain until its run is done and its email
        sent; returns the drains it took. Only the service and the drains are recorded."""
        data = make_org(slug, deals=1, contacts=1)
        add_workflow(data, "Won: email the contact", actions=SEND_EMAIL)
        deal = Deal.objects.select_related("stage").get(pk=data.deal_ids[0])
        sent_before = len(getattr(mail, "outbox", []))
        with recorder or nullcontext():
            deal_move_to_stage(deal=deal, stage=data.stages["won"])
        for drains in range(1, MAX_DRAINS + 1):
            with recorder or nullcontext():
                tasks.drain_events(fan_out=False)
            runs = list(WorkflowRun.objects.filter(organization=data.org).values_list("status", flat=True))
            if runs == [RunStatus.COMPLETED] and len(mail.outbox) == sent_before + 1:
                return drains
        raise SystemExit(f"{slug}: after {MAX_DRAINS} drains the runs are {runs}, "
                         f"{len(mail.outbox) - sent_before} emails sent")

    win("warmup", None)
    recorder = CallRecorder(os.path.dirname(crm_automation.__file__))
    drains = win("acme", recorder)
    print(f"trigger: deal_move_to_stage to won, then {drains} drain(s): run completed, 1 email sent")
    report(recorder.calls)


if __name__ == "__main__":
    try:
        main()
    finally:
        shutil.rmtree(VAR_DIR, ignore_errors=True)
