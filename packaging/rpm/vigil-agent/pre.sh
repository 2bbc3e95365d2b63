# vigil-agent %pre: create the vigil-agent system user (no login, home /var/lib/vigil-agent)
# before the files that belong to its group are unpacked.
if ! getent group vigil-agent >/dev/null; then
    groupadd --system vigil-agent
fi
if ! getent passwd vigil-agent >/dev/null; then
    useradd --system --gid vigil-agent --home-dir /var/lib/vigil-agent --no-create-home \
        --shell /sbin/nologin --comment "Vigil monitoring agent" vigil-agent
fi
exit 0
