#!/usr/bin/env bash
# Vigil quickstart: build, then run a collector on its embedded store (./vigil-data) with one
# agent on this machine enrolled into it (customer "local", site "this-machine") and reporting
# over mutual TLS. Ctrl-C stops both cleanly. Running it again reuses the data and identity.
#
#   ./quickstart.sh               ports 7700 (gRPC) and 7701 (HTTP) on 127.0.0.1
#   VIGIL_DATA=/tmp/v ./quickstart.sh    another data directory
set -euo pipefail
cd "$(dirname "$0")"

DATA="${VIGIL_DATA:-./vigil-data}"
GRPC="${VIGIL_GRPC_LISTEN:-127.0.0.1:7700}"
HTTP="${VIGIL_HTTP_LISTEN:-127.0.0.1:7701}"

echo "==> building (release; the first build takes a few minutes)"
cargo build --release --bins -p vigil-collector -p vigil-agent
BIN="${CARGO_TARGET_DIR:-target}/release"

mkdir -p "$DATA"
# Empty config files: every key at its default; flags below set the rest.
touch "$DATA/collector.toml" "$DATA/agent.toml"
pids=()
stop() {
    trap - INT TERM EXIT
    echo
    echo "==> stopping"
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop INT TERM EXIT

echo "==> starting vigil-collector (store: $DATA/collector, log: $DATA/collector.log)"
"$BIN/vigil-collector" --config "$DATA/collector.toml" --data-dir "$DATA/collector" \
    --grpc-listen "$GRPC" --http-listen "$HTTP" \
    > "$DATA/collector.out" 2> "$DATA/collector.log" &
pids+=($!)

for _ in $(seq 100); do
    grep -q "^vigil-collector ready" "$DATA/collector.out" 2>/dev/null && break
    if ! kill -0 "${pids[0]}" 2>/dev/null; then
        echo "vigil-collector failed to start:" >&2; cat "$DATA/collector.log" >&2; exit 1
    fi
    sleep 0.1
done

export VIGIL_SERVER="http://$HTTP"
export VIGIL_TOKEN_FILE="$DATA/collector/admin.token"
CTL=("$BIN/vigilctl")
AGENT=("$BIN/vigil-agent" --config "$DATA/agent.toml" --state-dir "$DATA/agent" --collector "https://$GRPC")

if [ ! -f "$DATA/agent/tls/identity.json" ]; then
    echo "==> enrolling this machine (customer local, site this-machine)"
    "${CTL[@]}" customers add local >/dev/null 2>&1 || true
    "${CTL[@]}" sites add local this-machine >/dev/null 2>&1 || true
    token_json=$("${CTL[@]}" --json tokens create --customer local --site this-machine --ttl 10m)
    token=$(sed -n 's/.*"token": "\(vge_[0-9a-f]*\)".*/\1/p' <<<"$token_json")
    ca=$(sed -n 's/.*"ca_sha256": "\([0-9a-f]*\)".*/\1/p' <<<"$token_json")
    VIGIL_ENROLL_TOKEN="$token" "${AGENT[@]}" enroll --ca-sha256 "$ca"
fi

echo "==> starting vigil-agent (state: $DATA/agent, log: $DATA/agent.log)"
"${AGENT[@]}" 2> "$DATA/agent.log" &
pids+=($!)

echo "==> waiting for this machine to report"
for _ in $(seq 300); do
    if "${CTL[@]}" --json hosts 2>/dev/null | grep -q '"last_seen_unix_ms": [0-9]'; then
        break
    fi
    sleep 0.1
done
"${CTL[@]}" hosts

cat <<MSG

Vigil is running. Where to look:
  admin token     $DATA/collector/admin.token   (export VIGIL_TOKEN_FILE=$DATA/collector/admin.token)
  hosts (CLI)     $BIN/vigilctl --token-file $DATA/collector/admin.token hosts
  one host        $BIN/vigilctl --token-file $DATA/collector/admin.token hosts show <ID>
  enrol a host    $BIN/vigilctl --token-file $DATA/collector/admin.token tokens create --customer local --site this-machine
  API             curl -H "Authorization: Bearer \$(cat $DATA/collector/admin.token)" http://$HTTP/api/v1/hosts
  metrics         curl -H "Authorization: Bearer \$(cat $DATA/collector/admin.token)" http://$HTTP/metrics
  health          http://$HTTP/healthz   http://$HTTP/readyz
  CA fingerprint  $(sed -n 's/.*ca_sha256=//p' "$DATA/collector.out")
  logs            $DATA/collector.log   $DATA/agent.log

Press Ctrl-C to stop both.
MSG
wait "${pids[@]}"
