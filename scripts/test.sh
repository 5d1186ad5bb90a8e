#!/usr/bin/env bash
# Runs every test of shoal: unit and property tests, and the integration
# tests that drive the real binary with redis-cli, redis-benchmark, the
# Rust redis crate and redis-py. Installs what the tests need when missing:
# Debian's redis-tools and Python's redis package.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v redis-cli >/dev/null || ! command -v redis-benchmark >/dev/null; then
  echo "test.sh: installing redis-tools (redis-cli, redis-benchmark)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-tools >/dev/null
fi

if ! python3 -c 'import redis' 2>/dev/null; then
  echo "test.sh: installing the Python redis package"
  python3 -m pip install --quiet 'redis>=5' 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages 'redis>=5' 2>/dev/null \
    || { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-redis >/dev/null; }
fi

redis-cli --version
python3 -c 'import redis; print("redis-py", redis.__version__)'

cargo test --locked --all-targets "$@"
