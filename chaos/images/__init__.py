"""Node images built locally, without a registry (DESIGN §8).

    tag = ensure_node_image(docker_client(), "kvlite", progress=print)

`base.ensure_base` gives a Debian bookworm base (debian:bookworm-slim if present or pullable,
else debootstrap + docker import as chaos-base:<hash>); `node.ensure_node_image` layers python3,
sshd and the target's packages as chaos-node-<target>:<hash>. Both are cached by content hash.
"""
from chaos.images.base import apt_mirror, ensure_base
from chaos.images.node import ensure_node_image, find_node_image, target_spec

__all__ = ["apt_mirror", "ensure_base", "ensure_node_image", "find_node_image", "target_spec"]
