# vigil-agent %post ($1 = 1 install, >= 2 upgrade): create the state directory, enable the unit,
# then let the NEW binary check the config before any restart; the old process keeps running
# from memory until then and is left alone if the check fails.
if [ ! -d /var/lib/vigil-agent ]; then
    install -d -m 0700 -o vigil-agent -g vigil-agent /var/lib/vigil-agent
fi
if [ -f /etc/vigil/agent.toml ]; then
    chown root:vigil-agent /etc/vigil/agent.toml
    chmod 0640 /etc/vigil/agent.toml
fi
if [ "$1" -eq 1 ] && command -v systemctl >/dev/null; then
    systemctl --no-reload enable vigil-agent.service >/dev/null 2>&1 || true
fi
if ! reason=$(/usr/bin/vigil-agent --config /etc/vigil/agent.toml check-config 2>&1); then
    echo "vigil-agent: the new vigil-agent rejects /etc/vigil/agent.toml:" >&2
    echo "$reason" >&2
    echo "vigil-agent: the running service was NOT restarted. Fix /etc/vigil/agent.toml, then run" >&2
    echo "vigil-agent:   systemctl restart vigil-agent" >&2
    exit 1
fi
if [ ! -e /var/lib/vigil-agent/tls/identity.json ]; then
    echo "vigil-agent: installed and enabled; it starts once this host is enrolled:"
    echo "vigil-agent:   1. set collector = \"https://COLLECTOR:7700\" in /etc/vigil/agent.toml"
    echo "vigil-agent:   2. vigil-agent enroll --ca-sha256 HASH --token-file FILE"
    echo "vigil-agent:   3. systemctl start vigil-agent"
    echo "vigil-agent: (an operator prints the token and the hash with 'vigilctl tokens create')"
elif [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
    systemctl restart vigil-agent.service >/dev/null 2>&1 || true
else
    echo "vigil-agent: systemd is not running here; the service was not (re)started"
fi
exit 0
