#!/usr/bin/env bash
# Vendored from ../shared/tools/container-base.sh (the team tool); tests/container uses the
# shared copy when present.
# container-base.sh: make podman/buildah usable on a Docker-less Debian 12 machine
# (root, no Docker daemon, no Docker Hub; only the Debian archive that apt is configured with),
# and provide a local debian:bookworm-slim base image so that a Dockerfile that starts
# `FROM debian:bookworm-slim` builds unchanged.
#
# After it:   buildah bud --pull-never -t localhost/authproxy:test -f docker/Dockerfile .
#             podman run --rm --pull=never --init --network=host localhost/authproxy:test ...
#
# Why the tweaks: this kind of machine lacks CAP_SYS_RESOURCE, so podman's default rlimits
# cannot be applied, and its cgroup layout is hybrid, which crun refuses and runc accepts.
# Notes: old buildah (1.28): no `RUN <<EOF` heredocs, no `COPY --link`; HEALTHCHECK is kept
# only with `--format docker`. Use `--pull-never`/`--pull=never`: there is no registry.
#
# Idempotent: a second run reuses the base image (FORCE_BASE=1 rebuilds it). About 2 minutes
# the first time (apt + debootstrap), a few seconds after that.
set -euo pipefail
SUITE=${SUITE:-bookworm}
BASE_TAG=localhost/debian:${SUITE}-slim
[ "$(id -u)" = 0 ] || { echo "container-base: run as root" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
APT="apt-get -o DPkg::Lock::Timeout=600 -q"
if ! command -v buildah >/dev/null || ! command -v podman >/dev/null || ! command -v runc >/dev/null \
   || ! command -v debootstrap >/dev/null; then
  $APT update >/dev/null
  $APT install -y buildah podman runc debootstrap netavark aardvark-dns containernetworking-plugins \
      catatonit fuse-overlayfs slirp4netns uidmap iptables >/dev/null
fi

NOFILE=$(ulimit -Hn); [ "$NOFILE" = unlimited ] && NOFILE=1048576
[ "$NOFILE" -gt 1048576 ] && NOFILE=1048576
NPROC=$(ulimit -Hu); { [ "$NPROC" = unlimited ] || [ "$NPROC" -gt 32768 ]; } && NPROC=32768
mkdir -p /etc/containers
cat > /etc/containers/containers.conf <<EOF
# written by container-base.sh: rlimits within this machine's hard limits; runc for hybrid cgroups
[containers]
default_ulimits = ["nofile=${NOFILE}:${NOFILE}", "nproc=${NPROC}:${NPROC}"]
[engine]
runtime = "runc"
EOF

if [ -n "${FORCE_BASE:-}" ] || ! podman image exists "$BASE_TAG"; then
  MIRROR=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' | awk -v s="$SUITE" '$2==s{print $1; exit}')
  case "$MIRROR" in http://*|https://*) ;; *) echo "container-base: no http(s) mirror for $SUITE in apt config" >&2; exit 1;; esac
  eval "$(apt-config shell APT_HTTP_PROXY Acquire::http::Proxy)"
  [ -n "${APT_HTTP_PROXY:-}" ] && export http_proxy=$APT_HTTP_PROXY
  R=$(mktemp -d /var/tmp/container-base.XXXXXX)
  trap 'rm -rf "$R"' EXIT
  debootstrap --variant=minbase "$SUITE" "$R" "$MIRROR" >/dev/null
  # apt sources inside the image: the host's own sources for this suite
  rm -f "$R/etc/apt/sources.list"
  apt-get indextargets --format '$(REPO_URI) $(RELEASE)' | sort -u | awk -v s="$SUITE" '
    $2 == s || $2 == s"-updates" || $2 == s"-security" {u[$1] = u[$1] (u[$1] ? " " : "") $2}
    END {for (k in u) printf "Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n", k, u[k]}' \
    > "$R/etc/apt/sources.list.d/debian.sources"
  # the same trims the official -slim images carry
  cat > "$R/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  cat > "$R/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' > "$R/etc/apt/apt.conf.d/docker-no-languages"
  printf '#!/bin/sh\nexit 101\n' > "$R/usr/sbin/policy-rc.d"; chmod 755 "$R/usr/sbin/policy-rc.d"
  rm -rf "$R"/var/lib/apt/lists/* "$R"/var/cache/apt/* "$R"/var/log/*.log "$R"/var/log/apt/* \
         "$R"/usr/share/man/* "$R"/usr/share/info/* "$R"/etc/hostname
  find "$R/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
  find "$R/usr/share/doc" -mindepth 1 -type d -empty -delete
  : > "$R/etc/resolv.conf"
  tar --numeric-owner --xattrs --acls -C "$R" -c . \
    | podman import --change 'CMD ["bash"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        - "$BASE_TAG" >/dev/null
fi
# so that `FROM debian:bookworm-slim` resolves to the local image
podman tag "$BASE_TAG" "docker.io/library/debian:${SUITE}-slim"
echo "container-base: podman $(podman --version | awk '{print $3}'), buildah $(buildah --version | awk '{print $3}'); base image docker.io/library/debian:${SUITE}-slim ready"
