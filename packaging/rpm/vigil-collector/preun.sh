# vigil-collector %preun ($1 = 0 erase, >= 1 upgrade): on erase stop and disable the service; on
# upgrade leave the running service alone (the new package's %post restarts it).
if [ "$1" -eq 0 ] && command -v systemctl >/dev/null; then
    if [ -d /run/systemd/system ]; then
        systemctl stop vigil-collector.service >/dev/null 2>&1 || true
    fi
    systemctl --no-reload disable vigil-collector.service >/dev/null 2>&1 || true
fi
exit 0
