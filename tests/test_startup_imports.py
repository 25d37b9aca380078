"""What a process pays to start: loading the URLs does not import the MCP SDK (a third of a
second of CPU in every web worker and command); /mcp imports it at its first request."""

import subprocess
import sys

from django.conf import settings


def test_loading_the_urls_leaves_the_mcp_sdk_unimported():
    script = ("import sys, django; django.setup(); from django.urls import resolve; import config.urls; "
              "print(resolve('/mcp').url_name, 'mcp' in sys.modules)")
    found = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                           cwd=settings.BASE_DIR, env={"DJANGO_SETTINGS_MODULE": "config.settings",
                                                      "PATH": "/usr/bin:/bin", "DATABASE_URL": ""})
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == ["mcp", "False"]
