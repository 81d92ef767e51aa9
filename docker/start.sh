#!/bin/bash
# The image's entrypoint, under tini: runs the container's command (JupyterLab) as the owner of the repository
# mounted at /home/jovyan/work, so that what the notebook writes there belongs to that owner on the host,
# whatever their uid, with nothing but the token in .env. The server is kept off root:
#
#   the folder's owner is uid U > 0   jovyan takes uid U and the folder's gid, and the command runs as them;
#                                     `docker compose exec -u jovyan ...` then runs as them too
#   it is root, under a rootless      root: root in this container is the unprivileged host user who owns
#   engine (Docker rootless, Podman)  the folder, so nothing else could write there
#   it is root, otherwise             jovyan (1000:100), with one line saying what to do unless uid 1000 can
#                                     write there anyway (Docker Desktop's file sharing is reported to show
#                                     root as the owner of everything); ALLOW_ROOT=1 runs it as root instead
#   started as non-root (--user)      that user, as asked; one line if it cannot write to the folder
set -euo pipefail

home="${HOME:-/home/jovyan}"
work="${home}/work"
# Overridable only so that tests/test_docker.py can run this script unprivileged, with stubs.
passwd="${PRENDAS_PASSWD:-/etc/passwd}"
uid_map="${PRENDAS_UID_MAP:-/proc/self/uid_map}"

say() { echo "prendas-start: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  if [ ! -w "${work}" ]; then
    say "WARNING: uid $(id -u) cannot write to ${work} (owned by uid $(stat -c %u "${work}")): start the container without --user (compose: without user:), it then runs as the folder's owner"
  fi
  exec "$@"
fi

read -r uid gid < <(stat -c '%u %g' "${work}")
whose="the owner of ${work}"
if [ "${uid}" -eq 0 ]; then
  # "0 0 4294967295": root here is root on the host. A rootless engine maps 0 to the user who runs it.
  if ! awk '$1 == 0 && $2 == 0 { found = 1 } END { exit !found }' "${uid_map}"; then
    say "running as root: ${work} belongs to root in this container, which is not root on the host (rootless engine)"
    exec "$@"
  fi
  if [ "${ALLOW_ROOT:-}" = 1 ]; then
    say "running as root (ALLOW_ROOT=1): ${work} belongs to root"
    exec "$@"
  fi
  uid=1000 gid=100 whose="the image's default: ${work} belongs to root but lets it write"
  # Some mounts show root as the owner of every file yet let anyone write (reported of Docker Desktop's file
  # sharing, docker/for-mac#6243): only a folder that really refuses uid 1000 gets the warning. The probe's
  # script is in single quotes on purpose: the probe's shell expands it.
  # shellcheck disable=SC2016
  if ! setpriv --reuid="${uid}" --regid="${gid}" --clear-groups -- \
       bash -c 'probe="$(mktemp -p "$1" .prendas-start.XXXXXX)" && rm -f "${probe}"' probe "${work}" 2> /dev/null; then
    say "WARNING: ${work} belongs to root and the server does not run as root, so the notebook cannot save there: use a checkout your own user owns (sudo chown -R \"\$(id -u):\$(id -g)\" .), or set ALLOW_ROOT=1 in .env"
    whose="the image's default"
  fi
fi

# jovyan takes the owner's ids, edited in place: usermod -u would also chown every file of jovyan's old uid
# under the home, the mounted repository included.
sed -i -E "s/^jovyan:([^:]*):[0-9]+:[0-9]+:/jovyan:\1:${uid}:${gid}:/" "${passwd}"
# The home but not the mount becomes theirs: Jupyter, Matplotlib and Keras keep settings and caches there.
find "${home}" -path "${work}" -prune -o -exec chown -h "${uid}:${gid}" {} +
say "running as uid ${uid}, gid ${gid} (jovyan), ${whose}"
exec setpriv --reuid="${uid}" --regid="${gid}" --clear-groups -- "$@"
