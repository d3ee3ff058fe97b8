#!/usr/bin/env bash
# `make demo`: MedPerf's data-owner tutorial on this machine, end to end, with manifests.
#   venv -> images -> toy data -> registry server (SQLite, loopback, background) -> seed ->
#   plan -> apply as the data owner (stops at the approval gate, exit 3) -> approve as the benchmark
#   owner -> apply again (results submitted, exit 0) -> results table.
# Running it again finds everything converged and exits 0. `make demo-clean` (scripts/demo.sh clean)
# stops the server (by its pid) and removes the database, the state dir and the toy data; images stay.
#
# Settings (environment):
#   MEDPERF_DEMO_PORT   the server's loopback port (default 8000)
#   MEDPERF_DEMO_DIR    database, tokens, state dir, logs, pid file (default .demo)
#   MAKE                make program used for the venv, images and data steps (default make)
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
components=examples/chestxray/build/components.json
url=http://127.0.0.1:$port
db=$demo/server.sqlite3
tokens=$demo/tokens.json
state=$demo/state
pidfile=$demo/server.pid
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
  [ -d "$demo" ] && say "removing $demo (database, tokens, state dir, logs)"
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

  step images "build the chest X-ray images (docker build; cached after the first time)"
  quiet "$make_cmd" --no-print-directory images
  [ -f "$components" ] || fail 1 "$components is missing after make images"

  step data "generate the toy data into $data/"
  quiet "$make_cmd" --no-print-directory data

  step server "start the registry on $url (SQLite $db, log $server_log)"
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
    quiet "$bin/medperf-server" --db "$db" seed --demo data --components "$components" --tokens-file "$tokens"
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
