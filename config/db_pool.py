"""A forked process never uses its parent's connection pool.

Django keeps one psycopg pool per process and database alias, in a class attribute. A process
that forks (django-q2's sentinel forks every worker, the monitor and the pusher; gunicorn would
with --preload) hands the child a copy of that pool: its idle connections are sockets the parent
still uses, and its maintenance threads do not exist in the child. A child borrowing from it
would talk over the parent's socket, and the two would read each other's answers.

django-q2 closes Django's connections before it forks (cluster.py: spawn_cluster, reincarnate),
which with a pool returns them to that copied pool, so closing is not enough. Right after a fork,
in the child, the inherited pools and any connection the forking thread held are forgotten
without being closed (closing would end the parent's sessions: a pooled connection's socket is
shared until the child exits), and the child opens a pool of its own on first use. psycopg itself
never finishes a connection from a process other than the one that opened it, and the forgotten
objects are kept referenced, so nothing is sent to the server on their behalf.
"""

import os
import sys

_inherited: list = []  # kept for the life of the child, so no finaliser ever runs on them
_registered = False


def forget_inherited_pools() -> None:
    """In a freshly forked child: drop the parent's pools and borrowed connections."""
    base = sys.modules.get("django.db.backends.postgresql.base")
    if base is None:  # nothing PostgreSQL was loaded before the fork
        return
    pools = base.DatabaseWrapper._connection_pools
    _inherited.extend(pools.values())
    pools.clear()
    from django.db import connections

    for wrapper in connections.all(initialized_only=True):
        if wrapper.vendor == "postgresql" and wrapper.connection is not None:
            _inherited.append(wrapper.connection)
            wrapper.connection = None  # the next query connects again, from the child's own pool


def forget_pools_in_forked_children() -> None:
    """Register the fork hook once per interpreter (forked children inherit it)."""
    global _registered
    if not _registered:
        os.register_at_fork(after_in_child=forget_inherited_pools)
        _registered = True
