#!/usr/bin/env bash
# A local stand-in for python:3.12-slim-bookworm, for machines where no image registry answers.
#
#   sudo bash docker/make-base.sh [TAG]      (default TAG: prendas-check/python:bookworm-standin)
#
# Debian bookworm (debootstrap, minbase) with Debian's own Python 3.11 as a venv at /usr/local, the
# official image's layout (/usr/local/bin/python, /usr/local/lib/python3.X/site-packages), plus this
# host's extra CA certificates so pip inside reaches the package registry the way the host does.
# Build on it with --build-arg BASE_IMAGE=TAG (docker/check.sh does). It carries this host's
# certificates and another Python: a stand-in for testing here, never what users get.
set -euo pipefail

tag="${1:-prendas-check/python:bookworm-standin}"
rootfs_tag="local/debian:bookworm-slim"

[ "$(id -u)" -eq 0 ] || { echo "make-base.sh: debootstrap needs root: sudo bash $0" >&2; exit 2; }
command -v debootstrap > /dev/null || { echo "make-base.sh: needs debootstrap (apt-get install debootstrap)" >&2; exit 2; }

# The Debian mirror this host's apt uses for bookworm, else Debian's own. ($(...) is apt's syntax here.)
# shellcheck disable=SC2016
mirror="$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2> /dev/null | awk '$2 == "bookworm" {print $1; exit}' || true)"
mirror="${DEBIAN_MIRROR:-${mirror:-http://deb.debian.org/debian/}}"

work="$(mktemp -d "${TMPDIR:-/tmp}/prendas-base.XXXXXX")"
trap 'rm -rf "${work}"' EXIT

if ! docker image inspect "${rootfs_tag}" > /dev/null 2>&1; then
  echo "make-base.sh: debootstrap bookworm from ${mirror}"
  debootstrap --variant=minbase bookworm "${work}/rootfs" "${mirror}" > "${work}/debootstrap.log" 2>&1 \
    || { tail -20 "${work}/debootstrap.log" >&2; exit 1; }
  # The official image's sources: the release and its updates (security from Debian's own host).
  printf '%s\n' "deb ${mirror} bookworm main" "deb ${mirror} bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main" > "${work}/rootfs/etc/apt/sources.list"
  # The official debian images' apt settings: no package caches or translations left in layers.
  cat > "${work}/rootfs/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
  echo 'Acquire::Languages "none";' > "${work}/rootfs/etc/apt/apt.conf.d/docker-no-languages"
  rm -rf "${work}/rootfs/var/cache/apt/archives/"*.deb "${work}/rootfs/var/cache/apt/"*.bin "${work}/rootfs/var/lib/apt/lists/"*
  tar -C "${work}/rootfs" -c . | docker import - "${rootfs_tag}" > /dev/null
  rm -rf "${work}/rootfs"
fi

mkdir -p "${work}/context/ca"
cp /usr/local/share/ca-certificates/*.crt "${work}/context/ca/" 2> /dev/null || true
cat > "${work}/context/Dockerfile" <<EOF
FROM ${rootfs_tag}
ARG DEBIAN_FRONTEND=noninteractive
ENV LANG=C.UTF-8
COPY ca/ /usr/local/share/ca-certificates/
RUN apt-get update \\
    && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \\
    && rm -rf /var/lib/apt/lists/* \\
    && update-ca-certificates \\
    && python3 -m venv /usr/local \\
    && printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > /etc/pip.conf \\
    && python --version && pip --version
CMD ["python3"]
EOF
echo "make-base.sh: building ${tag} on ${rootfs_tag}"
docker build -t "${tag}" "${work}/context" > "${work}/build.log" 2>&1 || { tail -20 "${work}/build.log" >&2; exit 1; }
echo "make-base.sh: ${tag} ($(docker run --rm "${tag}" python --version))"
