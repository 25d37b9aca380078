"""django-q2's `qcluster`, with two additions: a stop (SIGTERM, Ctrl-C) first tells every worker of
the cluster to hand its work back (workers/shutdown.py), then stops the cluster as django-q2
does; and a stop that hangs because the database is gone ends by force within seconds
(workers/stop_guard.py: exit status 1). Same options and behaviour otherwise."""

import os

from django.conf import settings
from django_q.cluster import Cluster
from django_q.management.commands.qcluster import Command as DjangoQCommand

from crm_automation.workers import shutdown
from crm_automation.workers.stop_guard import StopGuard


class Command(DjangoQCommand):
    help = DjangoQCommand.help + " A stop first tells the workers to hand their work back."

    def handle(self, *args, **options):
        settings.SECRET_KEY  # noqa: B018 (as django-q2: the cluster signs its tasks)
        if options.get("cluster_name"):
            os.environ["Q_CLUSTER_NAME"] = options["cluster_name"]
        cluster = Cluster()  # installs django-q2's SIGTERM/SIGINT handlers…
        guard = StopGuard()
        shutdown.chain_signal_handlers(guard.start)  # …which now run after the flag is set
        cluster.start()
        if options.get("run_once", False):
            cluster.stop()
        cluster.sentinel.join()  # as the interpreter's exit would; a stop's signal handler runs in here
        guard.keep_forced_exit()
