"""`chaos down`: remove everything tests left behind (also after a crash or a SIGKILL).

Docker (default): the containers and networks (labelled `chaos.managed=1`) of every test whose
controller is gone: each carries its controller's host, pid and process start time
(chaos.runtime.owner), so a run still going in another terminal is kept, and so is a test
whose controller cannot be checked (another host, or made before the labels existed).
`--all` removes every chaos test regardless; `--test ID` removes that one test (asked by
name, so also while running). The iptables rules of the iptables backend live inside those
containers' network namespaces and go with them. Images are kept (they are the build cache).
SSH hosts (--nodes-file): every iptables INPUT rule with a `chaos...` comment is deleted and
leftover node processes (pid file + working directory under /var/lib/chaos) are SIGKILLed.
"""
from __future__ import annotations

import time
from typing import Any

import click


def docker_tests(client: Any) -> dict[str, tuple[str, str]]:
    """Every chaos test on the engine: test id -> (owner state, why); see chaos.runtime.owner.

    A test is "alive" if any of its containers/networks names a running controller, "gone"
    if all of them name one that has exited, else "unknown".
    """
    from chaos.runtime.docker import MANAGED, TEST
    from chaos.runtime.owner import owner_state

    seen: dict[str, list[tuple[str, str]]] = {}
    flt = {"label": f"{MANAGED}=1"}
    items = client.containers.list(all=True, filters=flt) + client.networks.list(filters=flt)
    for item in items:
        labels = item.attrs.get("Config", {}).get("Labels") or item.attrs.get("Labels") or {}
        test = labels.get(TEST)
        if test:
            seen.setdefault(test, []).append(owner_state(labels))
    out: dict[str, tuple[str, str]] = {}
    for test, states in seen.items():
        for wanted in ("alive", "unknown", "gone"):
            hit = [s for s in states if s[0] == wanted]
            if hit:
                out[test] = hit[0]
                break
    return out


@click.command()
@click.option("--test", "test_id", default=None,
              help="Only this docker test id, even if its controller still runs.")
@click.option("--all", "everything", is_flag=True,
              help="Every chaos test on the engine, also those whose controller still runs "
                   "(default: only tests whose controller is gone).")
@click.option("--nodes-file", type=click.Path(dir_okay=False),
              help="Clean these SSH hosts instead of Docker (one host, or `name host`, a line).")
@click.option("--ssh-user", default="root", show_default=True, help="User for --nodes-file hosts.")
@click.option("--ssh-key", type=click.Path(dir_okay=False), help="Private key for --nodes-file.")
@click.option("--ssh-port", default=22, show_default=True, type=click.IntRange(1, 65535),
              help="SSH port of the --nodes-file hosts.")
def down(test_id: str | None, everything: bool, nodes_file: str | None, ssh_user: str,
         ssh_key: str | None, ssh_port: int) -> None:
    """Remove the containers, networks and iptables rules chaos tests left.

    Docker: only tests whose controller process is gone, unless --all or --test.
    """
    started = time.monotonic()
    if nodes_file:
        from chaos.runtime.ssh import clean_hosts, read_nodes_file

        if not ssh_key:
            raise click.UsageError("--nodes-file needs --ssh-key")
        hosts = read_nodes_file(nodes_file)
        rules, killed = clean_hosts(hosts, ssh_user, ssh_key, ssh_port)
        click.echo(f"removed {rules} iptables rule(s), killed {killed} node process(es) on "
                   f"{len(hosts)} host(s) in {time.monotonic() - started:.1f}s")
        return
    from chaos.control.engine import docker_client
    from chaos.runtime.docker import remove_test_resources

    client = docker_client()
    if test_id or everything:
        containers, networks = remove_test_resources(client, test_id)
        click.echo(f"removed {containers} container(s), {networks} network(s) "
                   f"in {time.monotonic() - started:.1f}s")
        return
    tests = docker_tests(client)
    gone = sorted(t for t, (state, _) in tests.items() if state == "gone")
    kept = sorted(t for t, (state, _) in tests.items() if state != "gone")
    containers = networks = 0
    for test in gone:
        c, n = remove_test_resources(client, test)
        containers, networks = containers + c, networks + n
    click.echo(f"removed {containers} container(s), {networks} network(s) of {len(gone)} "
               f"test(s) whose controller is gone, in {time.monotonic() - started:.1f}s")
    for test in kept:
        click.echo(f"kept test {test}: {tests[test][1]} (chaos down --test {test} or --all "
                   "removes it)")
