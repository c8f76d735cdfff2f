#!/usr/bin/env bash
# The system libraries the Rust build links against: OpenSSL's headers (librdkafka's TLS and
# SASL/SCRAM) and pkg-config to find them. Installs them from Debian's packages only when
# missing, so it costs nothing on a machine that has them.
set -euo pipefail
if pkg-config --exists openssl 2>/dev/null; then
    exit 0
fi
echo "install-build-deps: OpenSSL headers or pkg-config missing; installing libssl-dev and pkg-config" >&2
sudo_if_needed() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
sudo_if_needed apt-get update -q
sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -q libssl-dev pkg-config
