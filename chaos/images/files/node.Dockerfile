# A chaos node: Debian + python3 + sshd (+ the target's packages). Rendered by chaos.images.node;
# {base}, {target} and {target_packages} are filled in there. The common packages come first so
# Docker's layer cache shares them between every target's image.
FROM {base}
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends python3 openssh-server iproute2 iptables procps \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /run/sshd /root/.ssh /opt/chaos /var/lib/chaos /var/log/chaos \
 && chmod 700 /root/.ssh \
 && printf 'PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUseDNS no\nMaxSessions 64\nMaxStartups 64:30:128\n' > /etc/ssh/sshd_config.d/chaos.conf
RUN if [ -n "{target_packages}" ]; then apt-get update -q \
 && apt-get install -y -q --no-install-recommends {target_packages} \
 && rm -rf /var/lib/apt/lists/*; fi
COPY chaos-entrypoint /usr/local/sbin/chaos-entrypoint
RUN chmod 755 /usr/local/sbin/chaos-entrypoint
LABEL chaos.image=node chaos.target={target}
CMD ["/usr/local/sbin/chaos-entrypoint"]
