#!/usr/bin/env bash
# Makes a host ready for the build system, installing only what is missing:
#   - a Docker engine >= 26.1 with buildx >= 0.13 (the oldest pair supported: the
#     containerd image store, registry cache export, named contexts, bake). An engine
#     and buildx that already answer are used as they are, on any distribution.
#     Missing ones come from apt: on Debian from Debian 13 (trixie, added with a low
#     pin), elsewhere setup stops with one line saying what to install;
#   - docker-registry (the CNCF distribution registry), skopeo (the registry client
#     that publishing uses) and debootstrap, from the host's own apt suites;
#   - the Python tools (ci/requirements-dev.txt; --runtime: ci/requirements.txt) and,
#     for the tests (not with --runtime), chromium (the timeline is checked as a picture);
#   - with --current-engine (make test runs it): Debian unstable's docker-buildx as a
#     CLI plugin under .cache/engines/current/docker-config and its dockerd unpacked
#     under .cache/engines/current/root (run only as a private engine by the tests),
#     for testing against current releases without touching the system engine
#     (Debian hosts only; nothing is installed with dpkg).
# The Debian mirror is the host's own (apt sources, one-line and deb822), or
# WHEELFORGE_DEBIAN_MIRROR. Root is not needed: apt runs through sudo.
# --dry-run prints what would be installed and changes nothing; --print-debian-mirror
# prints the mirror and exits.
set -euo pipefail

MIN_ENGINE=26.1
MIN_BUILDX=0.13
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CURRENT="$ROOT/.cache/engines/current"
DRY=0
WANT_CURRENT=0
PRINT_MIRROR=0
APT_ETC=${WHEELFORGE_APT_ETC:-/etc/apt}  # a test points it elsewhere
REQUIREMENTS="$ROOT/ci/requirements-dev.txt"
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    --current-engine) WANT_CURRENT=1 ;;
    --runtime) REQUIREMENTS="$ROOT/ci/requirements.txt" ;;
    --print-debian-mirror) PRINT_MIRROR=1 ;;
    *) echo "setup-host: unknown option $arg; use --dry-run, --current-engine, --runtime or --print-debian-mirror" >&2
       exit 2 ;;
  esac
done

say() { echo "setup-host: $*"; }
die() { echo "setup-host: $*" >&2; exit 1; }

# version_ge A B: A >= B, both dotted (a leading v and any +suffix ignored).
version_ge() {
  local a=${1#v} b=${2#v}
  a=${a%%[+~-]*}
  [ "$(printf '%s\n%s\n' "$b" "$a" | sort -V | head -n1)" = "$b" ]
}

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    die "need root for: $*; run as root or install sudo"
  fi
}

OS_RELEASE=${WHEELFORGE_OS_RELEASE:-/etc/os-release}  # a test points it elsewhere
os_id() {
  local id
  id=$(sed -n 's/^ID=//p' "$OS_RELEASE" 2>/dev/null | tr -d '"' || true)
  echo "${id:-unknown}"
}

# The host's Debian mirror: the first non-security URI of its apt sources.
debian_mirror() {
  if [ -n "${WHEELFORGE_DEBIAN_MIRROR:-}" ]; then
    echo "$WHEELFORGE_DEBIAN_MIRROR"
    return
  fi
  local uri
  uri=$(
    {
      cat "$APT_ETC"/sources.list "$APT_ETC"/sources.list.d/*.list 2>/dev/null |
        awk '$1 == "deb" { i = 2
               if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
               if ($(i + 1) !~ /security/) print $i }'
      cat "$APT_ETC"/sources.list.d/*.sources 2>/dev/null |
        awk 'BEGIN { RS = ""; FS = "\n" }
             { uri = ""; sec = 0
               for (i = 1; i <= NF; i++) {
                 if ($i ~ /^URIs:/) { split($i, f, /[ \t]+/); uri = f[2] }
                 if ($i ~ /^Suites:.*security/) sec = 1 }
               if (uri != "" && !sec) print uri }'
    } | grep -m1 . || true
  )
  [ -n "$uri" ] || die "no Debian mirror in $APT_ETC/sources.list*; set WHEELFORGE_DEBIAN_MIRROR"
  echo "${uri%/}"
}

# add_suite NAME PRIORITY: a Debian suite from the host's mirror, pinned low so that
# nothing comes from it unless asked for by name.
add_suite() {
  local suite=$1 priority=$2 mirror
  [ "$(os_id)" = debian ] || die "not adding Debian $suite to a $(os_id) host"
  grep -rqsE "^[^#]*[[:space:]]$suite([[:space:]]|$)|^Suites:.*\b$suite\b" \
    "$APT_ETC"/sources.list "$APT_ETC"/sources.list.d/ && return 0
  mirror=$(debian_mirror)
  echo "deb $mirror $suite main" | as_root tee "$APT_ETC/sources.list.d/$suite.list" >/dev/null
  printf 'Package: *\nPin: release n=%s\nPin-Priority: %s\n' "$suite" "$priority" |
    as_root tee "$APT_ETC/preferences.d/$suite-low" >/dev/null
  APT_UPDATED=0
}

APT_UPDATED=0
apt_update() {
  if [ "$APT_UPDATED" = 0 ]; then
    as_root apt-get update -qq
    APT_UPDATED=1
  fi
}

apt_install() {  # apt_install [-t SUITE] PACKAGE...
  command -v apt-get >/dev/null || die "missing $*; install it (no apt-get on this host)"
  apt_update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if [ "$PRINT_MIRROR" = 1 ]; then
  debian_mirror
  exit 0
fi

# ---- what is there ----------------------------------------------------------------
engine_version() {  # the running engine's version, else the installed dockerd's
  local running
  # Without a running daemon the client still prints an empty line (and exits 1).
  running=$(docker version --format '{{.Server.Version}}' 2>/dev/null) || running=
  if [ -n "$running" ]; then
    echo "$running"
  else
    dockerd --version 2>/dev/null | awk '{ sub(",", "", $3); print $3 }'
  fi
}
buildx_version() { docker buildx version 2>/dev/null | awk '{ print $2 }'; }

need_engine=()
engine=$(engine_version || true)
if [ -z "$engine" ] || ! command -v docker >/dev/null; then
  need_engine+=(docker.io containerd)
elif ! version_ge "$engine" "$MIN_ENGINE"; then
  say "Docker engine $engine is older than $MIN_ENGINE"
  need_engine+=(docker.io containerd)
fi
buildx=$(buildx_version || true)
if [ -z "$buildx" ] || ! version_ge "$buildx" "$MIN_BUILDX"; then
  need_engine+=(docker-buildx)
fi
need_apt=()
command -v docker-registry >/dev/null || need_apt+=(docker-registry)
command -v skopeo >/dev/null || need_apt+=(skopeo)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
# The tests look at the build timeline as a picture, in a real headless browser.
if [ "$REQUIREMENTS" = "$ROOT/ci/requirements-dev.txt" ] && ! command -v chromium >/dev/null; then
  need_apt+=(chromium)
fi
need_current=0
if [ "$WANT_CURRENT" = 1 ] && { ! "$CURRENT/docker-config/cli-plugins/docker-buildx" version \
    >/dev/null 2>&1 || ! "$CURRENT/root/usr/sbin/dockerd" --version >/dev/null 2>&1; }; then
  need_current=1
fi

if [ "$DRY" = 1 ]; then
  say "engine: ${engine:-none}, buildx: ${buildx:-none} (minimum $MIN_ENGINE / $MIN_BUILDX)"
  say "would install engine packages: ${need_engine[*]:-nothing}"
  say "would install packages: ${need_apt[*]:-nothing}"
  [ "$need_current" = 1 ] && say "would unpack current buildx and dockerd into $CURRENT"
  say "would install Python tools: $(basename "$REQUIREMENTS")"
  exit 0
fi

# ---- install what is missing ------------------------------------------------------
if ((${#need_engine[@]})); then
  [ "$(os_id)" = debian ] ||
    die "missing ${need_engine[*]} (Docker >= $MIN_ENGINE with buildx >= $MIN_BUILDX); install them with your distribution's Docker packages and run this again"
  add_suite trixie 100
  apt_install -t trixie "${need_engine[@]}"
fi
((${#need_apt[@]})) && apt_install "${need_apt[@]}"

if [ "$need_current" = 1 ]; then
  [ "$(os_id)" = debian ] ||
    die "the current engine comes from Debian unstable, which is not added to a $(os_id) host; run make test WHEELFORGE_TEST_ENGINES=oldest"
  add_suite sid 50
  apt_update
  work="$CURRENT.partial"
  rm -rf "$work"
  mkdir -p "$work/debs" "$work/root" "$work/docker-config/cli-plugins"
  (cd "$work/debs" && apt-get download -qq -o APT::Sandbox::User=root docker-buildx/sid \
    docker.io/sid) ||
    die "apt-get download docker-buildx/sid docker.io/sid failed; check the sid entry in $APT_ETC/sources.list.d"
  for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$work/root"; done
  cp "$work/root/usr/libexec/docker/cli-plugins/docker-buildx" "$work/docker-config/cli-plugins/"
  rm -rf "$CURRENT"
  mv "$work" "$CURRENT"
  say "current buildx: $("$CURRENT/docker-config/cli-plugins/docker-buildx" version)"
  say "current dockerd: $("$CURRENT/root/usr/sbin/dockerd" --version)"
fi

python3 -m pip install -q --disable-pip-version-check -r "$REQUIREMENTS"
say "engine ${engine:-$(engine_version)}, buildx $(buildx_version), registry, debootstrap and Python tools are ready"
