# vigil-collector %post ($1 = 1 install, >= 2 upgrade): create the state directory, enable the
# unit, then let the NEW binary check the config before any restart; the old process keeps
# running from memory until then and is left alone if the check fails.
if [ ! -d /var/lib/vigil-collector ]; then
    install -d -m 0700 -o vigil -g vigil /var/lib/vigil-collector
fi
if [ -f /etc/vigil/collector.toml ]; then
    chown root:vigil /etc/vigil/collector.toml
    chmod 0640 /etc/vigil/collector.toml
fi
if [ "$1" -eq 1 ] && command -v systemctl >/dev/null; then
    systemctl --no-reload enable vigil-collector.service >/dev/null 2>&1 || true
fi
if ! reason=$(/usr/bin/vigil-collector --config /etc/vigil/collector.toml check-config 2>&1); then
    echo "vigil-collector: the new vigil-collector rejects /etc/vigil/collector.toml:" >&2
    echo "$reason" >&2
    echo "vigil-collector: the running service was NOT restarted. Fix /etc/vigil/collector.toml, then run" >&2
    echo "vigil-collector:   systemctl restart vigil-collector" >&2
    exit 1
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
    systemctl restart vigil-collector.service >/dev/null 2>&1 || true
else
    echo "vigil-collector: systemd is not running here; the service was not (re)started"
fi
exit 0
