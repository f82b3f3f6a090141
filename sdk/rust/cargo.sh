#!/usr/bin/env bash
# cargo for sdk/rust, as `make sdk-rust` and tests/sdk/test_rust.py run it: the one place that says where
# the build goes. The bundled librdkafka takes minutes to build, so the target dir lives outside the
# checkout, and fresh clones reuse it. Niced and two jobs at most: the machine is shared.
set -euo pipefail
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/trajstream/cargo-target}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
cd "$(dirname "$0")"
exec nice cargo "$@"
