#!/usr/bin/env bash
# Builds the .deb and .rpm packages of vigil-agent and vigil-collector (with vigilctl) from
# this checkout, then prints each file and its size.
#
#   packaging/build.sh [OUT_DIR]          default OUT_DIR: target/packages
#
# Environment:
#   AGENT_PROFILE      cargo profile of the agent binary (default: release-agent, built for size)
#   VIGIL_PKG_VERSION  package version instead of the workspace version in Cargo.toml
#   VIGIL_PKG_FORMATS  which formats to build (default: "deb rpm")
#   VIGIL_PKG_FAST     1: faster, weaker .deb compression (tests)
#   CARGO_TARGET_DIR   honoured as by cargo
#
# Needs cargo-deb and cargo-generate-rpm:
#   cargo install --locked cargo-deb cargo-generate-rpm
set -euo pipefail

cd "$(dirname "$0")/.."
out=${1:-target/packages}
agent_profile=${AGENT_PROFILE:-release-agent}
formats=${VIGIL_PKG_FORMATS:-deb rpm}
target_dir=${CARGO_TARGET_DIR:-$PWD/target}

workspace_version=$(awk '
    /^\[workspace\.package\]/ { in_section = 1; next }
    /^\[/ { in_section = 0 }
    in_section && $1 == "version" { gsub(/"/, "", $3); print $3; exit }
' Cargo.toml)
version=${VIGIL_PKG_VERSION:-$workspace_version}
if [ -z "$version" ]; then
    echo "build.sh: no version: none in [workspace.package] of Cargo.toml and VIGIL_PKG_VERSION unset" >&2
    exit 2
fi
case $version in
    *[!0-9A-Za-z.+~]*)
        echo "build.sh: VIGIL_PKG_VERSION '$version' has characters a package version cannot hold" >&2
        exit 2 ;;
esac

for tool in $formats; do
    case $tool in
        deb) sub=deb ;;
        rpm) sub=generate-rpm ;;
        *) echo "build.sh: unknown format '$tool' in VIGIL_PKG_FORMATS (deb, rpm)" >&2; exit 2 ;;
    esac
    if ! cargo "$sub" --version >/dev/null 2>&1; then
        echo "build.sh: cargo $sub is missing: cargo install --locked cargo-deb cargo-generate-rpm" >&2
        exit 2
    fi
done

mkdir -p "$out"
out=$(cd "$out" && pwd)

# The packaged collector config is the generated example with the store where the package
# keeps it; everything else stays at its default.
mkdir -p packaging/generated
sed 's|^data_dir = .*|data_dir = "/var/lib/vigil-collector"|' \
    packaging/config/collector.example.toml > packaging/generated/collector.toml
grep -qx 'data_dir = "/var/lib/vigil-collector"' packaging/generated/collector.toml || {
    echo "build.sh: packaging/config/collector.example.toml has no top-level data_dir line" >&2
    exit 1
}

# Debian wants a changelog in every binary package; one entry for the version being built,
# dated by the last commit so that two builds of one commit are the same.
changed=$(git log -1 --format=%aD 2>/dev/null || date -R)
cat > packaging/generated/changelog <<CHANGELOG
vigil ($version) stable; urgency=medium

  * Vigil $version.

 -- Vigil maintainers <maintainers@vigil.example>  $changed
CHANGELOG

fast=()
if [ "${VIGIL_PKG_FAST:-}" = 1 ]; then
    fast=(--fast)
fi

cargo build --locked --profile "$agent_profile" -p vigil-agent --bin vigil-agent
cargo build --locked --release -p vigil-collector --bin vigil-collector --bin vigilctl

for format in $formats; do
    case $format in
        deb)
            cargo deb --no-build --locked -p vigil-agent --profile "$agent_profile" \
                --deb-version "$version" "${fast[@]}" -o "$out" >/dev/null
            cargo deb --no-build --locked -p vigil-collector \
                --deb-version "$version" "${fast[@]}" -o "$out" >/dev/null
            ;;
        rpm)
            cargo generate-rpm -p agent --target-dir "$target_dir" --profile "$agent_profile" \
                --set-metadata "version = \"$version\"" -o "$out"
            cargo generate-rpm -p collector --target-dir "$target_dir" \
                --set-metadata "version = \"$version\"" -o "$out"
            ;;
    esac
done

echo "packages in $out (version $version, agent profile $agent_profile):"
for file in "$out"/vigil-*"$version"*; do
    [ -e "$file" ] || continue
    printf '%10d  %s\n' "$(stat -c %s "$file")" "$(basename "$file")"
done
