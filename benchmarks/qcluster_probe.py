"""`manage.py qcluster` for the benchmarks: the same command, started from here so that the bench
knows which code the workers run, and (for the latency hops) when each drain task starts.

    PYTHONPATH=<tree> python benchmarks/qcluster_probe.py     # cwd = <tree>

- BENCH_PROBE_INFO=<file>: writes {"crm_automation": crm_automation.__file__} there once Django
  is set up, so compare.py can check that a baseline tree's qcluster imports the baseline's code;
- BENCH_PROBE_LOG=<file>: the drain task (whatever module the tree keeps it in: its queue
  module's DRAIN_TASK) appends "<epoch seconds> <pid>" to the file each time a worker starts it.
  Workers are forked from this process, so they inherit the wrapped function.
"""

import functools
import importlib
import json
import os
import sys
import time
from pathlib import Path


def first_module(*names: str):
    for name in names:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError:
            continue
    raise ModuleNotFoundError(f"none of {names}")


def note_drain_starts(log: Path) -> None:
    queue = first_module("crm_automation.automation.runtime.queue", "crm_automation.automation.queue")
    module_name, attribute = queue.DRAIN_TASK.rsplit(".", 1)
    module = importlib.import_module(module_name)
    drain = getattr(module, attribute)

    @functools.wraps(drain)
    def noted(*args, **kwargs):
        with log.open("a") as out:
            out.write(f"{time.time():.6f} {os.getpid()}\n")
        return drain(*args, **kwargs)

    setattr(module, attribute, noted)  # django-q2 finds a task's function by its dotted path


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    import crm_automation

    if info := os.environ.get("BENCH_PROBE_INFO"):
        from instruments import modules_elsewhere  # this directory: sys.path[0]

        tree = Path.cwd().resolve()
        written = Path(f"{info}.part")  # renamed when complete: the bench may be reading already
        written.write_text(json.dumps({"crm_automation": crm_automation.__file__, "python": sys.executable,
                                       "elsewhere": modules_elsewhere(tree)}))
        written.replace(info)
    if log := os.environ.get("BENCH_PROBE_LOG"):
        note_drain_starts(Path(log))
    from django.core.management import execute_from_command_line

    execute_from_command_line(["manage.py", "qcluster"])


if __name__ == "__main__":
    main()
