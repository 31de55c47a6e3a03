"""The patroni service's launcher: Patroni with PostgreSQL kept in the service's process group.

Patroni starts the postmaster detached: a spawned helper process calls os.setsid() and
then starts postgres, so PostgreSQL lives in a session of its own and survives when
Patroni's process group is killed. A chaos runtime kills, pauses and resumes a service by
its process group (the same rule on every runtime), so a "kill" of a node would leave its
database running and still primary: a fault that did not happen.

The launcher (written into the node's data dir and run by Debian's /usr/bin/python3, the
interpreter Patroni is installed for) turns os.setsid into a no-op at import time. The
spawned helper re-imports this file as its __mp_main__ (multiprocessing's spawn start method
runs the parent's main script), so the no-op applies there too, and the postmaster and every
backend stay in the patroni service's process group. Nothing else in Patroni changes.
"""
from __future__ import annotations

#: the launcher's source, written to <data_dir>/patroni_launcher.py
SOURCE = '''\
"""Run Patroni with PostgreSQL in this process group (see targets/postgres/launcher.py)."""
import os
import sys

os.setsid = lambda: None  # keep postgres in the service's process group (kill/pause reach it)

if __name__ == "__main__":
    from patroni.__main__ import main
    sys.argv = ["patroni", *sys.argv[1:]]
    sys.exit(main())
'''

#: the interpreter Debian's patroni package is installed for
PYTHON = "/usr/bin/python3"
FILE = "patroni_launcher.py"


def argv(data_dir: str, config_file: str) -> list[str]:
    """The patroni service's command line."""
    return [PYTHON, f"{data_dir}/{FILE}", config_file]
