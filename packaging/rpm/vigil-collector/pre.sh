# vigil-collector %pre: create the vigil system user (no login, home /var/lib/vigil-collector)
# before the files that belong to its group are unpacked.
if ! getent group vigil >/dev/null; then
    groupadd --system vigil
fi
if ! getent passwd vigil >/dev/null; then
    useradd --system --gid vigil --home-dir /var/lib/vigil-collector --no-create-home \
        --shell /sbin/nologin --comment "Vigil collector" vigil
fi
exit 0
