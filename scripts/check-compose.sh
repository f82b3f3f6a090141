#!/usr/bin/env bash
# Validate docker-compose.yml with docker-compose (Debian's 1.29.2).
# Installs Debian's docker-compose package first when it is missing and we are root.
# Exit codes: 0 valid, 2 docker-compose unavailable, other: docker-compose's own error.
set -euo pipefail

script_dir="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd -- "${script_dir}/.." && pwd)"

if ! command -v docker-compose >/dev/null 2>&1; then
    if [ "${EUID}" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "docker-compose not found; installing Debian's docker-compose package" >&2
        echo "+ apt-get update -qq" >&2
        apt-get update -qq
        echo "+ DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose
    fi
fi

if ! command -v docker-compose >/dev/null 2>&1; then
    echo "error: docker-compose is not available." >&2
    echo "       Install it (Debian/Ubuntu: 'apt-get install docker-compose', as root) and re-run $0." >&2
    exit 2
fi

echo "using $(docker-compose version --short 2>/dev/null || docker-compose --version)"
cd "${repo_root}"
docker-compose -f docker-compose.yml config -q
echo "docker-compose.yml: valid"
