# A chaos node: Debian + python3 + sshd (+ the target's packages). Rendered by chaos.images.node;
# {base}, {common_packages} and {target_packages} are filled in there. Few steps on purpose: on
# fuse-overlayfs every step costs a container commit (seconds on a busy machine). Packages the
# base already has (mmdebstrap installs the common ones) are not fetched again.
FROM {base}
COPY chaos-entrypoint /usr/local/sbin/chaos-entrypoint
RUN set -e; missing=""; \
 for p in {common_packages} {target_packages}; do \
   dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q ' installed$' || missing="$missing $p"; \
 done; \
 if [ -n "$missing" ]; then \
   apt-get update -q; \
   DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
     -o Dpkg::Options::=--force-unsafe-io $missing; \
   rm -rf /var/lib/apt/lists/*; \
 fi; \
 ssh-keygen -A; \
 mkdir -p /run/sshd /root/.ssh /opt/chaos /var/lib/chaos /var/log/chaos; \
 chmod 700 /root/.ssh; \
 printf 'PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUseDNS no\nMaxSessions 64\nMaxStartups 64:30:128\n' > /etc/ssh/sshd_config.d/chaos.conf
CMD ["/usr/local/sbin/chaos-entrypoint"]
