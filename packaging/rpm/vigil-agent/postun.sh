# vigil-agent %postun ($1 = 0 erase, >= 1 upgrade): rpm has no purge, so an erase keeps the
# state directory /var/lib/vigil-agent and the vigil-agent user (a reinstall finds them again);
# an edited config is kept as /etc/vigil/agent.toml.rpmsave. docs/install.md gives the commands
# that remove them.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
