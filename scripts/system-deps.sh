#!/usr/bin/env bash
# Install the Debian packages the tests and benchmarks use, when missing.
# Only as root (CI and the developers' machines); elsewhere it says what is missing.
set -euo pipefail
packages=(
  nginx               # the C reference server of the benchmarks (bench/); the proxy of deploy/nginx
  redis-server        # the redis:// broker's tests (tests/contract, tests/integration)
  libnginx-mod-nchan  # its pub/sub module, nchan
  chromium  # headless browser for the API documentation page tests (driven by Playwright)
  valgrind  # callgrind: instructions per connect (bench/connect_instructions.py)
)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: not root; install these Debian packages: ${missing[*]}" >&2
  exit 0
fi
echo "system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
