#!/usr/bin/env bash
# Vigil quickstart: build, then run a collector on its embedded store (./vigil-data) with one
# agent on this machine reporting to it. Ctrl-C stops both cleanly.
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

echo "==> starting vigil-agent (state: $DATA/agent, log: $DATA/agent.log)"
"$BIN/vigil-agent" --config "$DATA/agent.toml" --state-dir "$DATA/agent" \
    --collector "http://$GRPC" 2> "$DATA/agent.log" &
pids+=($!)

echo "==> waiting for this machine to report"
for _ in $(seq 300); do
    if "$BIN/vigilctl" --server "http://$HTTP" --json hosts 2>/dev/null | grep -q '"last_seen_unix_ms": [0-9]'; then
        break
    fi
    sleep 0.1
done
"$BIN/vigilctl" --server "http://$HTTP" hosts

cat <<MSG

Vigil is running. Where to look:
  hosts (CLI)     $BIN/vigilctl --server http://$HTTP hosts
  one host        $BIN/vigilctl --server http://$HTTP hosts show <ID>
  API             http://$HTTP/api/v1/hosts
  metrics         http://$HTTP/metrics
  health          http://$HTTP/healthz   http://$HTTP/readyz
  logs            $DATA/collector.log   $DATA/agent.log

Press Ctrl-C to stop both.
MSG
wait "${pids[@]}"
