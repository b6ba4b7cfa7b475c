#!/usr/bin/env bash
# Installs what the build system needs on a Debian 12 host: a Docker engine with
# buildx (from Debian 13, pinned so nothing else comes from there), the CNCF
# distribution registry, debootstrap for base images, and the Python tools.
# Idempotent: a host that already has everything is left as it is.
set -euo pipefail

need_apt=()
command -v dockerd >/dev/null || need_apt+=(docker.io containerd)
docker buildx version >/dev/null 2>&1 || need_apt+=(docker-buildx)
command -v docker-registry >/dev/null || need_apt+=(docker-registry)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)

if ((${#need_apt[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "setup-host: missing ${need_apt[*]}; run this script as root (it uses apt-get)" >&2
    exit 1
  fi
  if ! grep -rqs "trixie" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deb http://deb.debian.org/debian trixie main" > /etc/apt/sources.list.d/trixie.list
    printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' > /etc/apt/preferences.d/trixie-low
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq -t trixie docker.io docker-buildx containerd >/dev/null
  apt-get install -y -qq docker-registry debootstrap >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -r "$(dirname "$0")/requirements-dev.txt"
echo "setup-host: engine, buildx, registry, debootstrap and Python tools are installed"
