#!/usr/bin/env bash
# The Docker way, built and run for real:   bash docker/check.sh
#
# Where a Docker engine answers, this builds both images as docker-compose.yml describes (on a local stand-in
# base, docker/make-base.sh, when no image registry answers), then, from a copy of the repository owned by
# another uid (CHECK_UID, default 1001) with nothing but the token in .env, starts the CPU service as compose
# describes and checks: it becomes healthy; /api/status refuses a request without the token and answers one
# with it; one epoch of 512 images trains in the mounted folder; the notebook runs headless there with the
# small parameters of tests/test_notebook.py; every file written there belongs to that uid on the host. It
# also checks the GPU image's start (uid, ptxas, cuDNN) without a GPU, and the one line a root-owned folder
# gets. Then it prints the images' sizes and the times, and removes the containers, network and copy it made
# (the images stay). Not run in CI: the first build downloads about 4 GB. Needs Compose v2.
set -euo pipefail
export LC_ALL=C  # a decimal point in the times

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
uid="${CHECK_UID:-1001}"
project=prendas-check
standin=prendas-check/python:bookworm-standin

if ! command -v docker > /dev/null 2>&1 || ! docker info > /dev/null 2>&1; then
  echo "docker/check.sh: skipped: no Docker engine answers here (docker info failed)"
  exit 0
fi

say() { printf '%s\n' "$*"; }
fail() { printf 'docker/check.sh: FAILED: %s\n' "$*" >&2; exit 1; }
docker compose version > /dev/null 2>&1 \
  || fail "needs Docker Compose v2 (\`docker compose version\`); docker-compose 1.x is end-of-life and rejects the file"
case "${uid}" in 0 | 1000 | *[!0-9]* | '') fail "CHECK_UID=${uid}: choose a uid other than 0 and 1000 (the image's default)" ;; esac
for port in 8888 6006; do
  if (exec 3<> "/dev/tcp/127.0.0.1/${port}") 2> /dev/null; then
    fail "port ${port} on 127.0.0.1 is in use (another Jupyter or TensorBoard?): the service publishes it"
  fi
done

tmp="$(mktemp -d "${TMPDIR:-/tmp}/prendas-check.XXXXXX")"
copy="${tmp}/repo"
logs="${tmp}/logs"
mkdir -p "${copy}" "${logs}" "${tmp}/root-owned"
base=""
summary=()

compose() { docker compose --project-directory "${copy}" -p "${project}" "$@"; }

# Root inside a throwaway container: chown and remove files of another uid without sudo.
as_root_in_docker() {
  docker run --rm --network none --label "${project}=1" -v "${tmp}:/check" --entrypoint "$1" "${base}" "${@:2}"
}

cleanup() {
  local status=$?
  set +e
  if [ -f "${copy}/docker-compose.yml" ]; then compose down --volumes --remove-orphans --timeout 5 > /dev/null 2>&1; fi
  docker ps -aq --filter "label=${project}=1" | xargs -r docker rm -f > /dev/null 2>&1
  if [ -n "${base}" ] && [ "$(id -u)" -ne 0 ]; then as_root_in_docker rm -rf /check/repo /check/root-owned > /dev/null 2>&1; fi
  if [ "${status}" -ne 0 ] && [ -d "${logs}" ]; then
    kept="$(mktemp -d "${TMPDIR:-/tmp}/prendas-check-logs.XXXXXX")" && cp -r "${logs}/." "${kept}/" && say "logs kept in ${kept}" >&2
  fi
  rm -rf "${tmp}"
  exit "${status}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { printf '%s' "${EPOCHREALTIME}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# run LABEL COMMAND...: its output to a log (shown if it fails), its time to the summary.
run() {
  local label="$1" start log
  shift
  log="${logs}/$(printf '%s' "${label}" | tr -c 'A-Za-z0-9' '-').log"
  printf '%-50s' "${label} ..."
  start="$(now)"
  if "$@" > "${log}" 2>&1; then
    summary+=("$(printf '%-50s %7s s' "${label}" "$(since "${start}")")")
    printf 'ok (%s s)\n' "$(since "${start}")"
  else
    printf 'FAILED\n'
    tail -n 40 "${log}" >&2
    fail "${label}"
  fi
}

http_code() {  # the HTTP status of a GET
  if command -v curl > /dev/null 2>&1; then
    curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$1" || true
  else
    python3 -c 'import sys, urllib.request, urllib.error
try: print(urllib.request.urlopen(sys.argv[1], timeout=10).status)
except urllib.error.HTTPError as e: print(e.code)
except OSError: print("000")' "$1"
  fi
}

check_start="$(now)"
say "docker/check.sh on $(nproc) CPU cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), $(docker version -f 'Docker {{.Server.Version}}'), $(docker compose version --short | sed 's/^/Compose /')"

# --- the base image: the Dockerfile's own, or a stand-in where no registry answers ---------------------------
default_base="$(sed -n 's/^ARG BASE_IMAGE=//p' "${root}/Dockerfile")"
base="${BASE_IMAGE:-${default_base}}"
if docker image inspect "${base}" > /dev/null 2>&1 || timeout 300 docker pull -q "${base}" > /dev/null 2>&1; then
  say "base image: ${base}"
else
  say "base image: ${base} cannot be pulled (no registry answers): a local stand-in instead, ${standin}"
  if ! docker image inspect "${standin}" > /dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
      run "make the stand-in base (debootstrap)" bash "${root}/docker/make-base.sh" "${standin}"
    else
      run "make the stand-in base (debootstrap)" sudo bash "${root}/docker/make-base.sh" "${standin}"
    fi
  fi
  base="${standin}"
fi
build_args=()
[ "${base}" = "${default_base}" ] || build_args=(--build-arg "BASE_IMAGE=${base}")

# --- a copy of the repository (what a clone holds, plus uncommitted work), owned by uid CHECK_UID ----------
if git -C "${root}" rev-parse --git-dir > /dev/null 2>&1; then
  git -C "${root}" ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do if [ -e "${root}/${f}" ]; then printf '%s\0' "${f}"; fi; done \
    | tar -C "${root}" --null -T - -c | tar -C "${copy}" -x
else
  tar -C "${root}" --exclude=./.git --exclude=./.venv --exclude=./.env -c . | tar -C "${copy}" -x
fi
token="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf 'JUPYTER_TOKEN=%s\n' "${token}" > "${copy}/.env"   # the token, and nothing else
as_root_in_docker chown -R "${uid}:${uid}" /check/repo
as_root_in_docker chown 0:0 /check/root-owned
touch "${tmp}/marker"
say "repository copy: ${copy}, owned by uid ${uid}, .env holding only JUPYTER_TOKEN"

# --- both images, as compose describes them ------------------------------------------------------------------
run "build the CPU image (jupyter-cpu)" compose build "${build_args[@]}" jupyter-cpu
run "build the GPU image (jupyter)" compose build "${build_args[@]}" jupyter

# --- the CPU service, as compose describes it --------------------------------------------------------------
run "start jupyter-cpu (compose up)" compose up -d --no-build jupyter-cpu
container="$(compose ps -q jupyter-cpu)"
wait_healthy() {
  local status
  for _ in $(seq 1 120); do
    status="$(docker inspect -f '{{.State.Status}} {{.State.Health.Status}}' "${container}")"
    case "${status}" in
      "running healthy") return 0 ;;
      "running unhealthy" | exited* | dead*) echo "${status}"; docker logs "${container}"; return 1 ;;
    esac
    sleep 1
  done
  echo "not healthy after 120 s: ${status}"; docker logs "${container}"; return 1
}
run "healthy (HEALTHCHECK on /api)" wait_healthy
start_line="$(docker logs "${container}" 2>&1 | grep -m 1 '^prendas-start:' || true)"
say "  ${start_line}"
[[ "${start_line}" == *"running as uid ${uid}, gid ${uid} "* ]] || fail "the server does not run as uid ${uid}"

code="$(http_code "http://127.0.0.1:8888/api/status")"
say "  GET /api/status without the token: ${code}"
[ "${code}" = 403 ] || fail "without the token /api/status answered ${code}, not 403"
code="$(http_code "http://127.0.0.1:8888/api/status?token=${token}")"
say "  GET /api/status with the token:    ${code}"
[ "${code}" = 200 ] || fail "with the token /api/status answered ${code}, not 200"

# docker compose exec -u jovyan: jovyan has the folder owner's uid in the container (docker/start.sh).
run "train 1 epoch of 512 images (CLI, exec)" \
  compose exec -T -u jovyan jupyter-cpu python -m prendas train --epochs 1 --images 512 --out check-train
run "run the notebook headless, small parameters" \
  compose exec -T -u jovyan jupyter-cpu python docker/run_notebook.py gan_prendas.ipynb check-executed.ipynb
grep -h '^parameters\|^ran ' "${logs}"/run-the-notebook-*.log | sed 's/^/  /'

# --- on the host: what they wrote, and whose it is ----------------------------------------------------------
for folder in check-train/models check-train/images check-train/checkpoints images models checkpoints; do
  found="$(find "${copy}/${folder}" -type f -newer "${tmp}/marker" 2> /dev/null | wc -l)"
  [ "${found}" -gt 0 ] || fail "nothing new in ${folder}/"
done
say "  new files on the host: $(find "${copy}" -type f -newer "${tmp}/marker" | wc -l), e.g.:"
find "${copy}/images" "${copy}/models" -type f -newer "${tmp}/marker" -printf '    %u:%g %p\n' | sed "s|${copy}/||" | sort | head -n 6
others="$(find "${copy}" ! -uid "${uid}" -printf '%u:%g %p\n' | head -n 5)"
[ -z "${others}" ] || fail "files in the repository copy not owned by uid ${uid}:"$'\n'"${others}"
say "  every file in the repository copy belongs to uid ${uid} on the host"

# --- the GPU image starts the same way (no GPU needed for this), and a root-owned folder gets one line ------
run "GPU image: uid ${uid}, ptxas, cuDNN, TensorFlow" docker run --rm --network none --label "${project}=1" \
  -v "${copy}:/home/jovyan/work" prendas-jupyter bash -c \
  "test \"\$(id -u)\" = ${uid} && ptxas --version && ldconfig -p | grep -F libcudnn.so.9 && python -c 'import tensorflow as tf; print(tf.__version__)'"
root_uid="$(docker run --rm --network none --label "${project}=1" -v "${tmp}/root-owned:/home/jovyan/work" \
  prendas-jupyter-cpu id -u 2> "${logs}/root-owned.err")"
warning="$(grep -m 1 WARNING "${logs}/root-owned.err" || true)"
say "  a folder owned by root: runs as uid ${root_uid}; ${warning:0:100}..."
if [ -z "${warning}" ] || [ "${root_uid}" != 1000 ]; then
  fail "root-owned folder: uid ${root_uid}, $(cat "${logs}/root-owned.err")"
fi

# --- sizes and times ------------------------------------------------------------------------------------------
say ""
say "images (docker image ls; base: ${base}):"
for image in prendas-jupyter-cpu prendas-jupyter; do
  docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' "${image}" | sed 's/^/  /'
done
say "times:"
printf '  %s\n' "${summary[@]}"
say "  $(printf '%-50s %7s s' 'the whole check' "$(since "${check_start}")")"
say "docker/check.sh: passed"
