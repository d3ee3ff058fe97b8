#!/usr/bin/env bash
# `make demo`: MedPerf's data-owner tutorial on this machine, end to end, with manifests.
#   Docker engine (the one that answers, else a private dockerd under .demo/services/, its Debian packages
#   installed first when missing and we are root or have sudo) -> venv -> image registry (Debian's
#   docker-registry, loopback) -> images (pushed there) -> toy data (the tutorial's and the two-benchmarks
#   template's) -> file server (build/ over HTTP, loopback) -> registry server (SQLite, loopback, background) ->
#   seed (benchmarks chestxray and chestxray-external) -> plan -> apply as the data owner (stops at the approval
#   gate, exit 3) -> approve as the benchmark owner -> apply again (results submitted, exit 0) -> results table.
# Running it again finds everything converged and exits 0. `make demo-clean` (scripts/demo.sh clean) stops
# what the demo started (server, file server, image registry, private engine: by their pids) and removes what
# it created: the demo dir and the toy-data folders it generated (listed in .demo/created; a folder it found
# already there is never generated nor removed). The images of a shared engine stay.
# Without the docker-registry package the images stay local (records pin their local ids), as before.
# `scripts/demo.sh engine` does the first step alone and prints `export DOCKER_HOST=...`.
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
services_dir=$demo/services
created=$demo/created
sites=medperf_tutorial/sites/north
second_benchmark=chestxray-external
private_docker=
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

# Like quiet, for a long step: its progress lines (build.sh's and build.py's) are shown as they come.
progress() {
  local start; start=$(wc -l <"$log" 2>/dev/null || echo 0)
  printf '\n$ %s\n' "$*" >>"$log"
  "$@" 2>&1 | tee -a "$log" | grep --line-buffered -E '^(build|build\.sh): ' | sed -u 's/^/  | /'
  local code=${PIPESTATUS[0]}
  if [ "$code" -ne 0 ]; then
    tail -n +$((start + 1)) "$log" | tail -n 20 | sed 's/^/  | /' >&2
    fail "$code"
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

version_up() { answers "$url/version"; }

token_of() {
  "$bin/python" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$tokens" "$1"
}

# Root for what needs it: "" when we are root, "sudo" when sudo works without a password prompt; fails otherwise.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then echo ""; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then echo sudo
  else return 1; fi
}

# .ci/services.sh with the demo's own services dir: a private engine the shared ones never see.
services() { ${sudo_cmd:-} env MEDPERF_SERVICES_DIR="$services_dir" PATH="$PATH" "$root/.ci/services.sh" "$@"; }

# A Docker engine that answers: the one at DOCKER_HOST (or the default socket), else a private dockerd started
# under $services_dir (Debian's docker.io, mmdebstrap and docker-registry installed first when missing).
ensure_docker() {
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    say "Docker engine at ${DOCKER_HOST:-unix:///var/run/docker.sock}"; return 0
  fi
  if [ -n "${DOCKER_HOST:-}" ] && [ "$DOCKER_HOST" != "unix://$services_dir/docker/docker.sock" ]; then
    say "no Docker engine answers at $DOCKER_HOST: start that engine, or unset DOCKER_HOST and make demo starts its own" >&2
    exit 1
  fi
  sudo_cmd=$(as_root) || {
    say "no Docker engine answers and starting one needs root (no sudo here): as root, apt-get install docker.io mmdebstrap docker-registry and start dockerd, or set DOCKER_HOST to an engine you can use" >&2
    exit 1
  }
  if ! command -v dockerd >/dev/null 2>&1 || ! command -v mmdebstrap >/dev/null 2>&1 ||
     ! command -v docker-registry >/dev/null 2>&1; then
    services install-docker 2>&1 | sed 's/^services: /demo: /' || fail 1 "installing the Debian packages failed"
  fi
  if [ -S "$services_dir/docker/docker.sock" ]; then say "the demo's private Docker engine (under $services_dir/docker)"
  else say "starting a private Docker engine: dockerd, its socket, data and log under $services_dir/docker (make demo-clean stops it)"; fi
  local out
  out=$(services start-docker 2>>"$log") || { tail -n 20 "$log" | sed 's/^/  | /' >&2; fail 1 "dockerd did not start: see $services_dir/docker/dockerd.log"; }
  eval "$out"
  export DOCKER_HOST
  [ -n "$sudo_cmd" ] && sudo chown "$(id -u)" "${DOCKER_HOST#unix://}"
  sudo_cmd=
  docker info >/dev/null 2>&1 || fail 1 "the private engine at $DOCKER_HOST does not answer: see $services_dir/docker/dockerd.log"
  private_docker=1
}

# Toy data in a folder the demo generates itself, recorded in $created so that clean removes it and nothing else.
generate_data() {
  local folder=$1 cases=$2 seed=$3
  if grep -qxF "$folder" "$created" 2>/dev/null; then return 0; fi
  if [ -e "$folder" ]; then say "$folder/ exists and is not the demo's: used as it is"; return 0; fi
  quiet "$bin/python" examples/chestxray/make_data.py --out "$folder" --cases "$cases" --seed "$seed"
  echo "$folder" >>"$created"
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
  local kept="the Docker images are kept; \`docker image ls medperf-apply/*\` lists them"
  if [ -d "$services_dir" ]; then  # the private engine, if the demo started one (by its pid file)
    kept="the private engine's images went with it"
    sudo_cmd=$(as_root) || sudo_cmd=
    services stop 2>&1 | sed 's/^services: /demo: /'
    sudo_cmd=
  fi
  local folder
  while read -r folder; do  # only the toy data the demo generated, never a folder it found
    [ -n "$folder" ] && [ -d "$folder" ] || continue
    say "removing $folder/ (toy data generated by the demo)"
    rm -rf "$folder"
    while folder=$(dirname "$folder"); [ "$folder" != . ] && rmdir "$folder" 2>/dev/null; do :; done
  done < <(cat "$created" 2>/dev/null)
  [ -d "$demo" ] && say "removing $demo (database, tokens, image registry, private engine, state dir, logs)"
  rm -rf "$demo"
  say "clean ($kept)"
}

demo() {
  local started=$SECONDS code pid

  mkdir -p "$demo"
  : >>"$log"
  step docker "a Docker engine (containers run there): the one that answers, or a private one"
  ensure_docker

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
  say "the first time takes minutes (base image, training the toy models): progress below, everything in $log"
  MEDPERF_REGISTRY=$registry progress "$make_cmd" --no-print-directory images
  [ -f "$components" ] || fail 1 "$components is missing after make images"

  step data "generate the toy data: $data/ (the tutorial) and $sites/chest-202{4,5}/ (manifests/two-benchmarks.yaml)"
  generate_data "$data" 100 0
  generate_data "$sites/chest-2024" 40 1
  generate_data "$sites/chest-2025" 30 2

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

  step seed "seed the tutorial's world: users, containers, models, benchmarks chestxray and $second_benchmark (tokens in $tokens)"
  if [ -f "$tokens" ]; then
    say "already seeded"
  else
    quiet "$bin/medperf-server" --db "$db" seed --demo data --components "$components" --tokens-file "$tokens" \
      --files-url "http://127.0.0.1:$fport/" --archive-model --second-benchmark
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
  [ -n "$private_docker" ] && say "                    export DOCKER_HOST=$DOCKER_HOST    # the demo's private engine"
  say "the two-benchmarks template (its data generated in $sites/):"
  say "                    .venv/bin/medperf-apply plan manifests/two-benchmarks.yaml --values manifests/values/two-benchmarks.yaml"
  say "stop the server and remove the demo's files: make demo-clean"
}

case "${1:-demo}" in
  demo) demo ;;
  clean) clean ;;
  engine) mkdir -p "$demo"; : >>"$log"; ensure_docker >&2; echo "export DOCKER_HOST=${DOCKER_HOST:-unix:///var/run/docker.sock}" ;;
  *) echo "usage: $0 [demo|clean|engine]" >&2; exit 64 ;;
esac
