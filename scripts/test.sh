#!/usr/bin/env bash
# `make test`: the whole suite with its real parts, as CI runs it. For each part (Docker engine, PostgreSQL, image
# registry, OpenID provider, Slurm cluster, Chromium, nginx, tmux): the one that already answers (DOCKER_HOST, MEDPERF_PG_URL, MEDPERF_REGISTRY,
# MEDPERF_OIDC_ISSUER), else one started now by .ci/services.sh under a private dir on free ports (stopped again at
# the end, by pid), else none: its tests skip, and the last line names it with the reason and the fix.
# MEDPERF_REQUIRE_<PART>=1 is set for every part that answers, so its tests fail rather than skip.
# A part added to .ci/services.sh gets one want_<part> function here and an entry in `parts`.
#   PYTEST_ARGS              arguments for pytest (the Makefile's: both cores); extra arguments are passed on
#   MEDPERF_TEST_SERVICES    the parts to have (default: docker postgres registry oidc slurm chromium nginx tmux); the others are skipped
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=$root/.venv/bin

services_dir=
started=()   # parts started here (stopped at exit)
skipped=()   # "Part (reason: fix)"

say() { printf '%s\n' "test: $*" >&2; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
answers() { python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3).read()' "$1" \
  >/dev/null 2>&1; }

# .ci/services.sh with this run's own services dir (made on first use), its `export` lines evaluated.
services() {
  if [ -z "$services_dir" ]; then
    services_dir=$(mktemp -d /tmp/medperf-test.XXXXXX)
    trap stop_started EXIT
  fi
  local out
  out=$(MEDPERF_SERVICES_DIR=$services_dir "$root/.ci/services.sh" "$@" 2>>"$services_dir/services.log") || {
    tail -n 5 "$services_dir/services.log" | sed 's/^/  | /' >&2; return 1; }
  eval "$out"
}

stop_started() {
  [ -n "$services_dir" ] || return 0
  [ ${#started[@]} -gt 0 ] && say "stopping what this run started: ${started[*]}"
  MEDPERF_SERVICES_DIR=$services_dir "$root/.ci/services.sh" stop 2>>"$services_dir/services.log" || true
  rm -rf "$services_dir" 2>/dev/null || true
}

need_root() { [ "$(id -u)" -eq 0 ] || { skipped+=("$1 (starting it needs root: run make test as root, or start it as DEVELOPERS.md shows)"); return 1; }; }

want_docker() {
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then say "Docker engine at ${DOCKER_HOST:-the default socket}"
  elif ! command -v dockerd >/dev/null 2>&1; then skipped+=("Docker (dockerd not found: apt-get install docker.io)"); return 1
  else
    need_root Docker || return 1
    say "starting a private Docker engine (.ci/services.sh start-docker)"
    services start-docker || { skipped+=("Docker (dockerd did not start: see the lines above)"); return 1; }
    export DOCKER_HOST; started+=(Docker)
  fi
  export MEDPERF_REQUIRE_DOCKER=1
}

want_postgres() {
  if [ -n "${MEDPERF_PG_URL:-}" ] && "$bin/python" -c 'import os, psycopg; psycopg.connect(os.environ["MEDPERF_PG_URL"], connect_timeout=3).close()' 2>/dev/null; then
    say "PostgreSQL at MEDPERF_PG_URL"
  elif ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    skipped+=("PostgreSQL (initdb not found: apt-get install postgresql)"); return 1
  else
    need_root PostgreSQL || return 1
    say "starting PostgreSQL (.ci/services.sh start-postgres)"
    MEDPERF_PG_PORT=$(free_port) services start-postgres || { skipped+=("PostgreSQL (did not start: see the lines above)"); return 1; }
    export MEDPERF_PG_URL; started+=(PostgreSQL)
  fi
  export MEDPERF_REQUIRE_POSTGRES=1
}

want_registry() {
  if [ -n "${MEDPERF_REGISTRY:-}" ] && answers "http://$MEDPERF_REGISTRY/v2/"; then say "image registry at $MEDPERF_REGISTRY"
  elif ! command -v docker-registry >/dev/null 2>&1; then
    skipped+=("image registry (docker-registry not found: apt-get install docker-registry)"); return 1
  else
    say "starting an image registry (.ci/services.sh start-registry)"
    MEDPERF_REGISTRY_PORT=$(free_port) services start-registry || { skipped+=("image registry (did not start: see the lines above)"); return 1; }
    export MEDPERF_REGISTRY; started+=(registry)
  fi
  export MEDPERF_REQUIRE_REGISTRY=1
}

want_oidc() {
  if [ -n "${MEDPERF_OIDC_ISSUER:-}" ] && answers "$MEDPERF_OIDC_ISSUER/.well-known/openid-configuration"; then
    say "OpenID provider at $MEDPERF_OIDC_ISSUER"
  elif ! command -v node >/dev/null 2>&1; then skipped+=("OpenID provider (node not found: apt-get install nodejs npm)"); return 1
  elif [ ! -d .ci/oidc/node_modules/oidc-provider ] && ! command -v npm >/dev/null 2>&1; then
    skipped+=("OpenID provider (npm not found to install .ci/oidc's packages: apt-get install npm)"); return 1
  else
    if [ ! -d .ci/oidc/node_modules/oidc-provider ]; then
      say "installing the provider's npm packages (npm ci in .ci/oidc)"
      (cd .ci/oidc && npm ci --no-audit --no-fund --loglevel=error >&2) ||
        { skipped+=("OpenID provider (npm ci in .ci/oidc failed: see the lines above)"); return 1; }
    fi
    say "starting the OpenID provider (.ci/services.sh start-oidc)"
    MEDPERF_OIDC_PORT=$(free_port) services start-oidc || { skipped+=("OpenID provider (did not start: see the lines above)"); return 1; }
    export MEDPERF_OIDC_ISSUER MEDPERF_OIDC_AUDIENCE MEDPERF_OIDC_CLIENT_ID MEDPERF_OIDC_JWKS_URL; started+=(OIDC)
  fi
  export MEDPERF_REQUIRE_OIDC=1
}

want_slurm() {
  if [ -n "${SLURM_CONF:-}" ] && SLURM_CONF=$SLURM_CONF sinfo -h >/dev/null 2>&1; then say "Slurm cluster at SLURM_CONF"
  elif ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    skipped+=("Slurm cluster (slurmctld or munged not found: apt-get install slurm-wlm munge)"); return 1
  else
    need_root "Slurm cluster" || return 1
    local base
    base=$(python3 -c '
import socket
for base in range(46817, 60000, 7):
    try:
        held = [socket.socket() for _ in range(3)]
        for i, s in enumerate(held):
            s.bind(("127.0.0.1", base + i))
        print(base); break
    except OSError:
        continue')
    say "starting a Slurm cluster: munged, slurmctld and two slurmd (.ci/services.sh start-slurm)"
    MEDPERF_SLURM_PORT=$base services start-slurm || { skipped+=("Slurm cluster (did not start: see the lines above)"); return 1; }
    export SLURM_CONF; started+=(Slurm)
  fi
  export MEDPERF_REQUIRE_SLURM=1
}

# Installed-only parts: the tests start their own (a headless browser; an nginx per scale-out test).
want_chromium() {
  if command -v "${MEDPERF_CHROMIUM:-chromium}" >/dev/null 2>&1 && command -v "${MEDPERF_CHROMEDRIVER:-chromedriver}" >/dev/null 2>&1; then
    say "Chromium and chromedriver found"
  else skipped+=("Chromium (chromium or chromedriver not found: apt-get install chromium chromium-driver)"); return 1; fi
  export MEDPERF_REQUIRE_CHROMIUM=1
}

want_nginx() {
  if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then say "nginx found"
  else skipped+=("nginx (not found: apt-get install nginx)"); return 1; fi
  export MEDPERF_REQUIRE_NGINX=1
}

want_tmux() {
  if command -v tmux >/dev/null 2>&1; then say "tmux found"
  else skipped+=("tmux (not found: apt-get install tmux)"); return 1; fi
  export MEDPERF_REQUIRE_TMUX=1
}

# The example images the Docker tests run: built (and pushed to the registry) when the engine lacks them.
want_images() {
  [ "${MEDPERF_REQUIRE_DOCKER:-}" = 1 ] || return 0
  docker image inspect medperf-apply/chestxray-prep:latest >/dev/null 2>&1 && return 0
  say "building the example images (make images; a few minutes the first time)"
  make --no-print-directory images >&2 || { say "make images failed"; exit 1; }
}

parts=(docker:Docker postgres:PostgreSQL registry:"image registry" oidc:"OpenID provider" slurm:"Slurm cluster" chromium:Chromium nginx:nginx tmux:tmux)
wanted=" ${MEDPERF_TEST_SERVICES:-docker postgres registry oidc slurm chromium nginx tmux} "
for part in "${parts[@]}"; do
  if [[ "$wanted" == *" ${part%%:*} "* ]]; then "want_${part%%:*}" || true
  else skipped+=("${part#*:} (not in MEDPERF_TEST_SERVICES)"); fi
done
want_images

export MEDPERF_ARTIFACTS_DIR=${MEDPERF_ARTIFACTS_DIR:-$root/test-artifacts}  # the web page's screenshots
# shellcheck disable=SC2086  # PYTEST_ARGS is a list of words
"$bin/pytest" ${PYTEST_ARGS:-} "$@"
code=$?
if [ ${#skipped[@]} -gt 0 ]; then
  for s in "${skipped[@]}"; do say "skipped: $s"; done
else
  say "every real part ran (nothing skipped for a missing service)"
fi
exit "$code"
