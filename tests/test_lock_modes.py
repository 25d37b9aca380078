"""Row locks that change no key are FOR NO KEY UPDATE (docs/architecture.md, invariant 11).

PostgreSQL checks a new row's foreign keys at commit with a KEY SHARE lock on the row it points
at, and FOR UPDATE blocks that: a drain inserting runs and events that point at a workflow
deadlocked with an admin's Pause holding the organization FOR UPDATE. Only a function that
deletes the locked row may take FOR UPDATE (tests/test_concurrency.py shows the deadlock)."""

import ast
from pathlib import Path

import crm_automation

DELETERS = {"record_delete", "workflow_delete", "event_subscription_delete"}


def _plain_locks() -> list[tuple[str, str]]:
    found = []
    root = Path(crm_automation.__file__).parent
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "select_for_update"
                        and not any(k.arg == "no_key" for k in node.keywords)):
                    found.append((str(path.relative_to(root)), function.name))
    return found


def test_only_deletes_take_for_update_locks():
    plain = _plain_locks()
    assert {name for _, name in plain} <= DELETERS, [p for p in plain if p[1] not in DELETERS]
    assert {name for _, name in plain} == DELETERS  # (the test still sees the ones that may)
