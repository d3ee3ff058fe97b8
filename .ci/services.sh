#!/usr/bin/env bash
# Start or stop the services the test suite needs and that a fresh machine lacks:
# a Docker engine on a private socket, a PostgreSQL cluster, an image registry, an OpenID provider
# (.ci/oidc) and a Slurm cluster (munged, slurmctld, two slurmd nodes) on loopback; install also brings Chromium
# and chromedriver for the web page's browser tests, tmux for the terminal tests, and nginx, installed only: each
# scale-out test (tests/scaleout) and bench/server.py starts an nginx of its own on a free port (server/cluster.py:
# config, pid, logs and temp paths under its own prefix).
#   .ci/services.sh install   apt-get the Debian packages when missing (needs root); npm ci in .ci/oidc
#   .ci/services.sh start     start them all (idempotent); prints `export ...` lines to eval
#   .ci/services.sh stop      stop only what this script started, by pid
#   .ci/services.sh install-docker   only what `make demo` needs: Docker, mmdebstrap, docker-registry (needs root)
# start-docker, start-postgres, start-registry, start-oidc, stop-oidc, start-slurm and stop-slurm act on one. State
# lives under $MEDPERF_SERVICES_DIR (default /tmp/medperf-services). The provider listens on
# 127.0.0.1:$MEDPERF_OIDC_PORT (default 54330); slurmctld on $MEDPERF_SLURM_PORT (default 56817), the two slurmd on
# the next two ports.
set -euo pipefail
dir=${MEDPERF_SERVICES_DIR:-/tmp/medperf-services}
pg_port=${MEDPERF_PG_PORT:-54329}
oidc_port=${MEDPERF_OIDC_PORT:-54330}
oidc_src=$(cd "$(dirname "$0")/oidc" && pwd)
registry_port=${MEDPERF_REGISTRY_PORT:-55000}
slurm_port=${MEDPERF_SLURM_PORT:-56817}  # slurmctld; slurmd n1 and n2 listen on the next two ports

log() { echo "services: $*" >&2; }

install() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
  pg_bin >/dev/null 2>&1 || missing+=(postgresql)
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
  # the web page's browser tests (tests/server/test_site_browser.py): Debian's Chromium and its matching driver
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
  # nginx lives in /usr/sbin, often not on a user's PATH. Debian starts its own service after install (port 80)
  # where systemd runs; the tests never use that one.
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
  command -v tmux >/dev/null 2>&1 || missing+=(tmux)  # not a service: the terminal tests' re-wrapping terminal
  command -v slurmctld >/dev/null 2>&1 || missing+=(slurm-wlm)
  command -v munged >/dev/null 2>&1 || missing+=(munge)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if ! command -v npm >/dev/null 2>&1; then  # Debian's nodejs comes without npm
    log "installing npm"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
  fi
  if [ ! -d "$oidc_src/node_modules/oidc-provider" ] || [ "$oidc_src/package-lock.json" -nt "$oidc_src/node_modules" ]; then
    log "npm ci in $oidc_src"
    (cd "$oidc_src" && npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
}

# The packages a Docker-only machine needs (make demo): one line each saying what it is for; needs root.
install_docker() {
  local missing=() pair
  for pair in "dockerd:docker.io:the Docker engine the containers run in" \
              "mmdebstrap:mmdebstrap:builds the offline base image" \
              "docker-registry:docker-registry:the image registry on loopback"; do
    IFS=: read -r cmd pkg why <<<"$pair"
    command -v "$cmd" >/dev/null 2>&1 && continue
    log "installing $pkg ($why) with apt-get"
    missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}

start_docker() {
  mkdir -p "$dir/docker"
  local sock="$dir/docker/docker.sock"
  if [ -S "$sock" ] && DOCKER_HOST="unix://$sock" docker info >/dev/null 2>&1; then
    log "dockerd already running"
  else
    dockerd --storage-driver=overlay2 --iptables=false --bridge=none \
      --data-root "$dir/docker/data" --exec-root "$dir/docker/exec" \
      --pidfile "$dir/docker/dockerd.pid" -H "unix://$sock" \
      >"$dir/docker/dockerd.log" 2>&1 &
    for _ in $(seq 1 60); do
      DOCKER_HOST="unix://$sock" docker info >/dev/null 2>&1 && break
      sleep 0.5
    done
    DOCKER_HOST="unix://$sock" docker info >/dev/null 2>&1 || { tail -n 20 "$dir/docker/dockerd.log" >&2; log "dockerd did not start"; return 1; }
    log "dockerd started (pid $(cat "$dir/docker/dockerd.pid"))"
  fi
  echo "export DOCKER_HOST=unix://$sock"
}

start_postgres() {
  local bin; bin=$(pg_bin) || { log "PostgreSQL is not installed"; return 1; }
  local data="$dir/pg/data"
  mkdir -p "$dir/pg"; chown postgres: "$dir/pg" 2>/dev/null || true
  chmod 755 "$dir"
  if [ ! -f "$data/PG_VERSION" ]; then
    su postgres -s /bin/sh -c "$bin/initdb -D '$data' --auth=trust -U postgres -E UTF8" >"$dir/pg/initdb.log" 2>&1
  fi
  if su postgres -s /bin/sh -c "$bin/pg_ctl -D '$data' status" >/dev/null 2>&1; then
    log "postgres already running"
  else
    su postgres -s /bin/sh -c "$bin/pg_ctl -D '$data' -l '$dir/pg/postgres.log' -w -o \"-p $pg_port -k '$dir/pg' -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off\" start" >/dev/null
    log "postgres started on 127.0.0.1:$pg_port"
  fi
  echo "export MEDPERF_PG_URL=postgresql://postgres@127.0.0.1:$pg_port/postgres"
}

oidc_pid() {
  local pid
  pid=$(cat "$dir/oidc/provider.pid" 2>/dev/null) || return 1
  # the pid is ours only while it still runs our provider (not a pid reused by another process)
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "provider.mjs" && echo "$pid"
}

start_oidc() {
  local issuer="http://127.0.0.1:$oidc_port" audience=${MEDPERF_OIDC_AUDIENCE:-https://registry.medperf-apply.test}
  mkdir -p "$dir/oidc"
  if oidc_pid >/dev/null; then
    log "OpenID provider already running (pid $(oidc_pid))"
  else
    [ -d "$oidc_src/node_modules/oidc-provider" ] || { log "run '$0 install' first (npm ci in $oidc_src)"; return 1; }
    (cd "$oidc_src" && OIDC_PORT=$oidc_port OIDC_AUDIENCE=$audience \
      OIDC_ACCESS_TOKEN_TTL=${MEDPERF_OIDC_ACCESS_TOKEN_TTL:-300} OIDC_DEVICE_INTERVAL=${MEDPERF_OIDC_DEVICE_INTERVAL:-5} \
      exec node provider.mjs >"$dir/oidc/provider.log" 2>&1 </dev/null) &
    echo $! >"$dir/oidc/provider.pid"
    for _ in $(seq 1 100); do
      python3 -c "import json,sys,urllib.request as u; sys.exit(json.load(u.urlopen('$issuer/.well-known/openid-configuration', timeout=2))['issuer'] != '$issuer')" 2>/dev/null && break
      oidc_pid >/dev/null || break
      sleep 0.2
    done
    python3 -c "import urllib.request as u; u.urlopen('$issuer/.well-known/openid-configuration', timeout=2)" 2>/dev/null \
      || { tail -n 20 "$dir/oidc/provider.log" >&2; log "the OpenID provider did not start"; return 1; }
    log "OpenID provider started on $issuer (pid $(cat "$dir/oidc/provider.pid"))"
  fi
  echo "export MEDPERF_OIDC_ISSUER=$issuer"
  echo "export MEDPERF_OIDC_AUDIENCE=$audience"
  echo "export MEDPERF_OIDC_CLIENT_ID=medperf-apply"
  echo "export MEDPERF_OIDC_JWKS_URL=$issuer/jwks"
}

stop_oidc() {
  local pid
  if pid=$(oidc_pid); then
    kill "$pid" && log "stopping the OpenID provider $pid"
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  fi
  rm -f "$dir/oidc/provider.pid"
}

# Debian's docker-registry (distribution 2.8) on loopback: plain HTTP (the engine trusts 127.0.0.0/8 without TLS),
# no auth, blobs under $dir/registry. The packaged /etc/docker/registry/config.yml wants htpasswd: not used.
registry_up() {
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
    "http://127.0.0.1:$registry_port/v2/" >/dev/null 2>&1
}

start_registry() {
  command -v docker-registry >/dev/null 2>&1 || { log "docker-registry is not installed (.ci/services.sh install)"; return 1; }
  mkdir -p "$dir/registry/data"
  local pidfile="$dir/registry/registry.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && registry_up; then
    log "registry already running"
  else
    registry_up && { log "something else answers on 127.0.0.1:$registry_port: set MEDPERF_REGISTRY_PORT"; return 1; }
    printf '%s\n' 'version: 0.1' 'log: {level: warn}' 'storage:' \
      "  filesystem: {rootdirectory: $dir/registry/data}" '  delete: {enabled: true}' 'http:' \
      "  addr: 127.0.0.1:$registry_port" >"$dir/registry/config.yml"
    docker-registry serve "$dir/registry/config.yml" >"$dir/registry/registry.log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 40); do registry_up && break; sleep 0.25; done
    registry_up || { tail -n 20 "$dir/registry/registry.log" >&2; log "the registry did not start"; return 1; }
    log "registry started on 127.0.0.1:$registry_port (pid $(cat "$pidfile"))"
  fi
  echo "export MEDPERF_REGISTRY=127.0.0.1:$registry_port"
}

# Slurm on loopback: munged on its own socket, slurmctld and two slurmd nodes (n1, n2: 1 CPU each) on one host
# on one machine. Final job states go to jobcomp/filetxt (`sacct -c`), so no slurmdbd/MariaDB;
# MinJobAge keeps finished jobs in squeue/scontrol for 5 minutes. Everything lives under $dir/slurm and
# $dir/munge; `sinfo` etc. need the SLURM_CONF printed by start-slurm.
slurm_pid() {  # the pid in a pid file, only while it still runs that daemon (not a reused pid)
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$2" && echo "$pid"
}

start_slurm() {
  command -v slurmctld >/dev/null 2>&1 && command -v munged >/dev/null 2>&1 \
    || { log "slurm-wlm and munge are not installed (.ci/services.sh install)"; return 1; }
  local s="$dir/slurm" m="$dir/munge" host; host=$(hostname -s)
  local conf="$s/slurm.conf" sock="$m/run/munge.sock"
  mkdir -p "$s"/{state,spool/n1,spool/n2,log,run} "$m"/{etc,run,log,lib}
  chmod 700 "$m/etc"
  if ! slurm_pid "$m/run/munged.pid" munged >/dev/null; then
    [ -f "$m/etc/munge.key" ] || { if [ -f /etc/munge/munge.key ]; then cp /etc/munge/munge.key "$m/etc/munge.key";
      else dd if=/dev/urandom of="$m/etc/munge.key" bs=1024 count=1 2>/dev/null; fi; }
    chmod 600 "$m/etc/munge.key"
    munged -S "$sock" --key-file="$m/etc/munge.key" --log-file="$m/log/munged.log" \
      --pid-file="$m/run/munged.pid" --seed-file="$m/lib/munged.seed" --force
    log "munged started (pid $(cat "$m/run/munged.pid"))"
  fi
  cat >"$conf" <<CONF
ClusterName=medperf
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$slurm_port
SlurmdPort=$((slurm_port + 1))
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$sock
StateSaveLocation=$s/state
SlurmdSpoolDir=$s/spool/%n
SlurmctldPidFile=$s/run/slurmctld.pid
SlurmdPidFile=$s/run/slurmd-%n.pid
SlurmctldLogFile=$s/log/slurmctld.log
SlurmdLogFile=$s/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$s/jobcomp.txt
MinJobAge=300
KillWait=5
SchedulerParameters=sched_interval=1
CommunicationParameters=NoInAddrAny
NodeName=n1 NodeHostname=$host NodeAddr=127.0.0.1 Port=$((slurm_port + 1)) CPUs=1 RealMemory=1000 State=UNKNOWN
NodeName=n2 NodeHostname=$host NodeAddr=127.0.0.1 Port=$((slurm_port + 2)) CPUs=1 RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP
CONF
  if slurm_pid "$s/run/slurmctld.pid" slurmctld >/dev/null; then
    log "slurmctld already running"
  else
    SLURM_CONF=$conf slurmctld -f "$conf"
    log "slurmctld started on 127.0.0.1:$slurm_port (pid $(cat "$s/run/slurmctld.pid"))"
  fi
  local n
  for n in n1 n2; do
    slurm_pid "$s/run/slurmd-$n.pid" slurmd >/dev/null || SLURM_CONF=$conf slurmd -f "$conf" -N "$n"
  done
  for _ in $(seq 1 60); do
    [ "$(SLURM_CONF=$conf sinfo -h -N -t idle,mix,alloc -o %N 2>/dev/null | sort -u | wc -l)" = 2 ] && break
    sleep 0.5
  done
  [ "$(SLURM_CONF=$conf sinfo -h -N -t idle,mix,alloc -o %N 2>/dev/null | sort -u | wc -l)" = 2 ] \
    || { SLURM_CONF=$conf sinfo -N >&2 || true; tail -n 20 "$s/log/slurmctld.log" >&2; log "the Slurm nodes did not come up"; return 1; }
  log "slurmd n1, n2 up"
  echo "export SLURM_CONF=$conf"
}

stop_slurm() {
  local s="$dir/slurm" pid f
  for f in "$s/run/slurmd-n1.pid:slurmd" "$s/run/slurmd-n2.pid:slurmd" "$s/run/slurmctld.pid:slurmctld" \
           "$dir/munge/run/munged.pid:munged"; do
    if pid=$(slurm_pid "${f%%:*}" "${f##*:}"); then
      kill "$pid" && log "stopping ${f##*:} $pid"
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    fi
  done
}

stop() {
  stop_slurm
  stop_oidc
  if [ -f "$dir/registry/registry.pid" ]; then
    local rpid; rpid=$(cat "$dir/registry/registry.pid")
    kill "$rpid" 2>/dev/null && log "stopping the registry $rpid" || true
    rm -f "$dir/registry/registry.pid"
  fi
  if [ -f "$dir/docker/dockerd.pid" ]; then
    local pid; pid=$(cat "$dir/docker/dockerd.pid")
    kill "$pid" 2>/dev/null && log "stopping dockerd $pid" || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  fi
  local bin; bin=$(pg_bin) || return 0
  if [ -f "$dir/pg/data/postmaster.pid" ]; then
    su postgres -s /bin/sh -c "$bin/pg_ctl -D '$dir/pg/data' -m fast stop" >/dev/null 2>&1 && log "postgres stopped" || true
  fi
}

case "${1:-}" in
  install) install ;;
  install-docker) install_docker ;;
  start) start_docker; start_postgres; start_registry; start_oidc; start_slurm ;;
  start-docker) start_docker ;;
  start-postgres) start_postgres ;;
  start-registry) start_registry ;;
  start-oidc) start_oidc ;;
  stop) stop ;;
  stop-oidc) stop_oidc ;;
  start-slurm) start_slurm ;;
  stop-slurm) stop_slurm ;;
  *) echo "usage: $0 install|install-docker|start|start-docker|start-postgres|start-registry|start-oidc|start-slurm|stop|stop-oidc|stop-slurm" >&2; exit 64 ;;
esac
