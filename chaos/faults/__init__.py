"""Fault kinds, one module each, in a registry (`FAULTS`, kind -> Fault).

    base        the Fault protocol, register(), get(), needs_of()
    shapes      partition shapes (defined once, used by every backend and the schedule)
    partition   start-partition / stop-partition: a shape's groups cut on the net backend
    latency     start-latency / stop-latency: delay (± jitter) on every node link
    bandwidth   start-bandwidth / stop-bandwidth: a rate limit on every node link
    kill        kill / restart: SIGKILL a node (or one named service), start it again
    pause       pause / resume: SIGSTOP a node (or one service), SIGCONT
    clock       start-clock / stop-clock: skew, bump, strobe or rate of a node's clocks
                (libfaketime preloaded into its services, driven through a control file)
    member      wipe / rejoin: a follower's data moved aside, the node rejoins as a new
                member and must catch up to the leader's log position
    membership  remove-member / add-member: a follower removed from the configuration
                (targets with Target.membership), added back as a new member
"""
# Registration order is the order of `--nemesis all` (it seeds the schedule: keep it stable).
from chaos.faults import partition  # noqa: F401, I001
from chaos.faults import latency  # noqa: F401
from chaos.faults import kill  # noqa: F401
from chaos.faults import pause  # noqa: F401
from chaos.faults import bandwidth  # noqa: F401
from chaos.faults import clock  # noqa: F401
from chaos.faults import member  # noqa: F401
from chaos.faults import membership  # noqa: F401
from chaos.faults.base import (FAULTS, Fault, get, host_files_of, needs_of, node_setup,
                               packages_of, refused, register)

__all__ = ["FAULTS", "Fault", "get", "host_files_of", "needs_of", "node_setup", "packages_of",
           "refused", "register"]
