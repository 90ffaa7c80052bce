#!/bin/sh
# Install the Debian packages the tests and the lab need, when missing. Needs root and apt-get.
set -eu
packages="wireguard-go wireguard-tools iproute2 ethtool iputils-ping curl shellcheck nftables iperf3 dash
postgresql python3-pyroute2 chromium fonts-dejavu-core"
missing=""
for package in $packages; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing="$missing $package"
done
if [ -z "$missing" ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "system-packages: missing:$missing (install them as root; tests that need them will skip)" >&2
    exit 0
fi
echo "system-packages: installing$missing"
apt-get update -qq
# shellcheck disable=SC2086  # word splitting of the package list is intended
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
