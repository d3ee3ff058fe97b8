#!/usr/bin/env bash
# `make demo`: MedPerf's data-owner tutorial on this machine, end to end, with manifests.
#   venv -> image registry (Debian's docker-registry, loopback) -> images (pushed there) -> toy data ->
#   file server (build/ over HTTP, loopback) -> registry server (SQLite, loopback, background) -> seed ->
#   plan -> apply as the data owner (stops at the approval gate, exit 3) -> approve as the benchmark
#   owner -> apply again (results submitted, exit 0) -> results table.
# Running it again finds everything converged and exits 0. `make demo-clean` (scripts/demo.sh clean)
# stops the server, the file server and the image registry (by their pids) and removes the database, the
# registry's blobs, the state dir and the toy data; the engine's images stay.
# Without the docker-registry package the images stay local (records pin their local ids), as before.
#
# Settings (environment):
#   MEDPERF_DEMO_PORT            the server's loopback port (default 8000)
#   MEDPERF_DEMO_REGISTRY_PORT   the image registry's loopback port (default: a free one)
#   MEDPERF_DEMO_FILES_PORT      the file server's loopback port (default: a free one)
#   MEDPERF_DEMO_DIR             database, tokens, state dir, logs, pid files (default .demo)
#   MAKE                         make program used for the venv, images and data steps (default make)
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

port=${MEDPERF_DEMO_PORT:-8000}
demo=${MEDPERF_DEMO_DIR:-.demo}
case "$demo" in /*) ;; *) demo=$root/$demo ;; esac
bin=$root/.venv/bin
make_cmd=${MAKE:-make}
manifest=manifests/chestxray-tutorial.yaml
data=medperf_tutorial/sample_raw_data
build_dir=examples/chestxray/build
components=$build_dir/components.json
url=http://127.0.0.1:$port
db=$demo/server.sqlite3
tokens=$demo/tokens.json
state=$demo/state
pidfile=$demo/server.pid
registry_dir=$demo/registry
files_pidfile=$demo/files.pid
server_log=$demo/server.log
log=$demo/demo.log
events=$demo/events.jsonl
step_no=0
step_name=

say() { printf '%s\n' "demo: $*"; }
step() { step_no=$((step_no + 1)); step_name=$1; printf '\n\033[1m==> [%d] %s\033[0m\n' "$step_no" "$2" | _plain; }
_plain() { if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then cat; else sed 's/\x1b\[[0-9;]*m//g'; fi; }

# Stop the demo with this step's exit code, saying where to look.
fail() {
  local code=$1; shift
  [ "$code" -eq 0 ] && code=1
  say "step [$step_no] $step_name failed (exit $code)${1:+: $*}" >&2
  say "logs: $log (set-up steps), $server_log (server), $events (apply events); state dir $state" >&2
  say "what the demo started keeps running: \`make demo-clean\` stops it" >&2
  exit "$code"
}

# A set-up step: its output goes to the demo log; on failure its last lines are shown.
quiet() {
  local start; start=$(wc -l <"$log" 2>/dev/null || echo 0)
  printf '\n$ %s\n' "$*" >>"$log"
  "$@" >>"$log" 2>&1
  local code=$?
  if [ $code -ne 0 ]; then
    tail -n +$((start + 1)) "$log" | tail -n 20 | sed 's/^/  | /' >&2
    fail $code
  fi
}

pid_alive() {
  local pid
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  # a recycled pid belongs to some other program: only ours counts
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -Eq "medperf-server .*run .*--port $port( |\$)" || return 1
  echo "$pid"
}

free_port() { "$bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# A helper started by this script, by its pid file, if it still runs (and is ours: the pid was not recycled).
ours() {
  local file=$1 pattern=$2 pid
  pid=$(cat "$file" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -Eq "$pattern" || return 1
  echo "$pid"
}

answers() {
  "$bin/python" - "$1" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
EOF
}

stop_pid() {
  local pid=$1 what=$2
  say "stopping the $what (pid $pid)"
  kill "$pid" 2>/dev/null
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  say "$what $pid did not stop on TERM: killing it"; kill -9 "$pid" 2>/dev/null
}

# Debian's docker-registry on loopback, its blobs under the demo dir: the images are pushed there and the
# records pin the registry's digests, as MedPerf's do. Prints HOST:PORT, or nothing without the package.
start_registry() {
  command -v docker-registry >/dev/null 2>&1 || return 0
  local pid rport
  if pid=$(ours "$registry_dir/registry.pid" "docker-registry serve $registry_dir/config.yml"); then
    cat "$registry_dir/port"; return 0
  fi
  rport=${MEDPERF_DEMO_REGISTRY_PORT:-$(cat "$registry_dir/port" 2>/dev/null || free_port)}
  mkdir -p "$registry_dir/data"
  printf '%s\n' 'version: 0.1' 'log: {level: warn}' 'storage:' "  filesystem: {rootdirectory: $registry_dir/data}" \
    'http:' "  addr: 127.0.0.1:$rport" >"$registry_dir/config.yml"
  nohup docker-registry serve "$registry_dir/config.yml" </dev/null >>"$registry_dir/registry.log" 2>&1 &
  echo $! >"$registry_dir/registry.pid"
  echo "$rport" >"$registry_dir/port"
  for _ in $(seq 1 50); do answers "http://127.0.0.1:$rport/v2/" && break; sleep 0.2; done
  answers "http://127.0.0.1:$rport/v2/" || return 1
  echo "$rport"
}

# build/ (weights, the archive model, the demo dataset) over HTTP on loopback: MedPerf's CLI fetches http(s) only.
start_files() {
  local pid fport
  if pid=$(ours "$files_pidfile" "http.server .*--directory $root/$build_dir"); then
    cat "$demo/files.port"; return 0
  fi
  fport=${MEDPERF_DEMO_FILES_PORT:-$(cat "$demo/files.port" 2>/dev/null || free_port)}  # the seeded URLs name it
  nohup "$bin/python" -m http.server --bind 127.0.0.1 --directory "$root/$build_dir" "$fport" \
    </dev/null >>"$demo/files.log" 2>&1 &
  echo $! >"$files_pidfile"
  echo "$fport" >"$demo/files.port"
  for _ in $(seq 1 50); do answers "http://127.0.0.1:$fport/components.json" && break; sleep 0.2; done
  answers "http://127.0.0.1:$fport/components.json" || return 1
  echo "$fport"
}

version_up() {
  "$bin/python" - "$url/version" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
EOF
}

token_of() {
  "$bin/python" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$tokens" "$1"
}

check_docker() {
  local where=${DOCKER_HOST:-unix:///var/run/docker.sock}
  local how='start one: eval "$(sudo .ci/services.sh start)" (see DEVELOPERS.md)'
  command -v docker >/dev/null 2>&1 || { say "no docker command on PATH: install Docker (sudo .ci/services.sh install), then $how" >&2; exit 1; }
  docker info >/dev/null 2>&1 || { say "no Docker engine answers at $where: $how" >&2; exit 1; }
}

clean() {
  local pid
  if pid=$(pid_alive); then
    say "stopping the demo server (pid $pid)"
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then say "server $pid did not stop on TERM: killing it"; kill -9 "$pid" 2>/dev/null; fi
  elif [ -f "$pidfile" ]; then
    say "the demo server is not running (stale pid file)"
  fi
  pid=$(ours "$files_pidfile" "http.server .*--directory $root/$build_dir") && stop_pid "$pid" "file server"
  pid=$(ours "$registry_dir/registry.pid" "docker-registry serve $registry_dir/config.yml") &&
    stop_pid "$pid" "image registry"
  if [ -f "$registry_dir/port" ] && command -v docker >/dev/null 2>&1; then  # the tags naming it go with it
    docker image ls --format '{{.Repository}}:{{.Tag}}' 2>/dev/null | grep "^127\.0\.0\.1:$(cat "$registry_dir/port")/" |
      xargs -r docker rmi >/dev/null 2>&1 || true
  fi
  [ -d "$demo" ] && say "removing $demo (database, tokens, image registry, state dir, logs)"
  rm -rf "$demo"
  [ -d medperf_tutorial ] && say "removing medperf_tutorial/ (toy data)"
  rm -rf medperf_tutorial
  say "clean (the Docker images are kept; \`docker image ls medperf-apply/*\` lists them)"
}

demo() {
  local started=$SECONDS code pid

  step docker "check the Docker engine (containers run there)"
  check_docker
  mkdir -p "$demo"
  : >>"$log"

  step venv "virtualenv and install (.venv, editable)"
  quiet "$make_cmd" --no-print-directory venv

  step registry "start the image registry on loopback (Debian's docker-registry; its blobs in $registry_dir)"
  local rport registry=
  rport=$(start_registry) || fail 1 "the image registry did not start: see $registry_dir/registry.log"
  if [ -n "$rport" ]; then
    registry=127.0.0.1:$rport
    say "registry $registry: the images are pushed there and pulled from it by digest"
  else
    say "no docker-registry here (apt-get install docker-registry): the images stay local, pinned by their ids"
  fi

  step images "build the chest X-ray images${registry:+ and push them to $registry} (cached after the first time)"
  MEDPERF_REGISTRY=$registry quiet "$make_cmd" --no-print-directory images
  [ -f "$components" ] || fail 1 "$components is missing after make images"

  step data "generate the toy data into $data/"
  quiet "$make_cmd" --no-print-directory data

  step files "serve $build_dir over HTTP on loopback (weights, the archive model, the demo dataset)"
  local fport
  fport=$(start_files) || fail 1 "the file server did not start: see $demo/files.log"
  say "files at http://127.0.0.1:$fport/"

  step server "start the registry server (medperf-server) on $url (SQLite $db, log $server_log)"
  if pid=$(pid_alive); then
    say "already running (pid $pid)"
  else
    version_up && fail 1 "something else answers on port $port: set MEDPERF_DEMO_PORT to a free port"
    server_log_start=$(cat "$server_log" 2>/dev/null | wc -l)
    nohup "$bin/medperf-server" --db "$db" run --host 127.0.0.1 --port "$port" </dev/null >>"$server_log" 2>&1 &
    echo $! >"$pidfile"
    say "started (pid $!)"
  fi
  for _ in $(seq 1 150); do
    version_up && break
    if ! pid_alive >/dev/null; then
      tail -n +$((${server_log_start:-0} + 1)) "$server_log" | tail -n 20 | sed 's/^/  | /' >&2
      tail -n +$((${server_log_start:-0} + 1)) "$server_log" | grep -q "Address already in use" &&
        fail 1 "port $port is taken by another program: set MEDPERF_DEMO_PORT to a free port"
      fail 1 "the server exited"
    fi
    sleep 0.2
  done
  version_up || fail 1 "the server did not answer $url/version within 30 s"

  step seed "seed the tutorial's world: users, containers, models, benchmark chestxray (tokens in $tokens)"
  if [ -f "$tokens" ]; then
    say "already seeded"
  else
    quiet "$bin/medperf-server" --db "$db" seed --demo data --components "$components" --tokens-file "$tokens" \
      --files-url "http://127.0.0.1:$fport/" --archive-model
  fi

  export MEDPERF_SERVER=$url MEDPERF_APPLY_HOME=$state
  local do_token bo_token
  do_token=$(token_of testdo@example.com) || fail 1 "cannot read testdo's token from $tokens"
  bo_token=$(token_of testbo@example.com) || fail 1 "cannot read testbo's token from $tokens"

  step plan "plan $manifest as the data owner testdo (nothing is sent, nothing is run)"
  MEDPERF_TOKEN=$do_token "$bin/medperf-apply" plan "$manifest" --event-log "$events"
  code=$?
  case $code in
    0) say "nothing to do: already converged" ;;
    2) say "the plan above is what apply does next" ;;
    *) fail $code ;;
  esac

  step apply "apply $manifest as testdo: register, prepare, operational, associate (then it waits for approval)"
  MEDPERF_TOKEN=$do_token "$bin/medperf-apply" apply --yes "$manifest" --event-log "$events"
  code=$?
  case $code in
    0) say "converged: nothing waits for approval" ;;
    3) say "exit 3, as expected: the association waits for the benchmark owner"

       step approve "approve the association as the benchmark owner testbo"
       MEDPERF_TOKEN=$bo_token "$bin/medperf-apply" association approve --benchmark chestxray --dataset mytestdata \
         --server "$url" --token-env MEDPERF_TOKEN || fail $?

       step apply-again "apply again as testdo: run every model, submit the results"
       MEDPERF_TOKEN=$do_token "$bin/medperf-apply" apply --yes "$manifest" --event-log "$events" || fail $?
       ;;
    *) fail $code ;;
  esac

  step results "the results on this machine (medperf-apply results)"
  MEDPERF_TOKEN=$do_token "$bin/medperf-apply" results "$manifest" || fail $?

  printf '\n'
  say "done in $((SECONDS - started)) s. The server keeps running on $url (web page at $url/: sign in with a token from $tokens)."
  say "as the data owner:  export MEDPERF_SERVER=$url MEDPERF_APPLY_HOME=$state"
  say "                    export MEDPERF_TOKEN=\$(.venv/bin/python -c 'import json; print(json.load(open(\"$tokens\"))[\"testdo@example.com\"])')"
  say "                    .venv/bin/medperf-apply plan $manifest    # exits 0: nothing to do"
  say "stop the server and remove the demo's files: make demo-clean"
}

case "${1:-demo}" in
  demo) demo ;;
  clean) clean ;;
  *) echo "usage: $0 [demo|clean]" >&2; exit 64 ;;
esac
