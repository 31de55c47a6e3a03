"""`chaos down`: remove everything tests left behind (also after a crash or a SIGKILL).

Docker (default): every container and network labelled `chaos.managed=1` (or `chaos.test=<id>`
with --test). The iptables rules of the iptables backend live inside those containers' network
namespaces and go with them. Images are kept (they are the build cache).
SSH hosts (--nodes-file): every iptables INPUT rule with a `chaos...` comment is deleted and
leftover node processes (pid file + working directory under /var/lib/chaos) are SIGKILLed.
"""
from __future__ import annotations

import time

import click


@click.command()
@click.option("--test", "test_id", default=None,
              help="Only this docker test id (default: every chaos test).")
@click.option("--nodes-file", type=click.Path(dir_okay=False),
              help="Clean these SSH hosts instead of Docker (one host, or `name host`, a line).")
@click.option("--ssh-user", default="root", show_default=True, help="User for --nodes-file hosts.")
@click.option("--ssh-key", type=click.Path(dir_okay=False), help="Private key for --nodes-file.")
@click.option("--ssh-port", default=22, show_default=True, type=click.IntRange(1, 65535),
              help="SSH port of the --nodes-file hosts.")
def down(test_id: str | None, nodes_file: str | None, ssh_user: str, ssh_key: str | None,
         ssh_port: int) -> None:
    """Remove the containers, networks and iptables rules chaos tests left."""
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

    containers, networks = remove_test_resources(docker_client(), test_id)
    click.echo(f"removed {containers} container(s), {networks} network(s) "
               f"in {time.monotonic() - started:.1f}s")
