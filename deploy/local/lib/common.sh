# shellcheck shell=bash
# deploy/local/lib/common.sh — helpers shared by the local-stack scripts.
#
# Sourced, never run. The caller sets PROG (the name used in messages) before
# sourcing and runs with `set -euo pipefail`.
#
# Conventions every script follows:
#  - A failure is ONE line on stderr, "<prog>: <what failed> (see <log file>)",
#    and a non-zero exit. The chatter of the tools we drive (maven, java,
#    initdb, pg_ctl) goes to log files under the run dir, never the terminal.
#  - Every wait is bounded: wait_until takes a deadline in seconds.
#  - State lives in the run dir ($RILL_RUN_DIR, default <repo>/.run), nowhere
#    else, so `down` can remove all of it.

RILL_LOCAL_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RILL_REPO_ROOT=$(cd "$RILL_LOCAL_DIR/../.." && pwd)

# The run dir, made absolute (the scripts cd around and write it into the env
# file). Not created here: `status` and `down` must not create it.
RILL_RUN_DIR=${RILL_RUN_DIR:-$RILL_REPO_ROOT/.run}
case $RILL_RUN_DIR in
  /*) ;;
  *) RILL_RUN_DIR=$PWD/$RILL_RUN_DIR ;;
esac
RILL_RUN_DIR=${RILL_RUN_DIR%/}
export RILL_RUN_DIR

# ---- messages ---------------------------------------------------------------

# die MESSAGE [EXIT]: the one-line failure report, then exit (default 1).
die() {
  printf '%s: %s\n' "${PROG:-rill}" "$1" >&2
  exit "${2:-1}"
}

# say MESSAGE: progress on stdout.
say() {
  printf '%s: %s\n' "${PROG:-rill}" "$*"
}

# ---- time -------------------------------------------------------------------

# now_ms: milliseconds since the epoch.
now_ms() {
  local t
  t=$(date +%s%N)
  printf '%s\n' $((t / 1000000))
}

# elapsed SINCE_MS: seconds since SINCE_MS, one decimal ("3.4").
elapsed() {
  local d=$(($(now_ms) - $1))
  printf '%d.%d\n' $((d / 1000)) $((d % 1000 / 100))
}

# wait_until SECONDS COMMAND...: run COMMAND every 0.2 s until it succeeds
# (returns 0) or SECONDS have passed (returns 1). COMMAND itself must be quick
# or bounded.
wait_until() {
  local limit_ms=$(($1 * 1000)) start
  shift
  start=$(now_ms)
  while :; do
    if "$@"; then
      return 0
    fi
    if (($(now_ms) - start >= limit_ms)); then
      return 1
    fi
    sleep 0.2
  done
}

# ---- arguments --------------------------------------------------------------

# need_uint NAME VALUE: VALUE must be a decimal number.
need_uint() {
  [[ $2 =~ ^[0-9]+$ ]] || die "$1 must be a number, got '$2'" 2
}

# need_port NAME VALUE: VALUE must be a TCP port number we can use.
need_port() {
  need_uint "$1" "$2"
  (($2 >= 1024 && $2 <= 65000)) || die "$1 must be between 1024 and 65000, got $2" 2
}

# ---- processes --------------------------------------------------------------

# pid_alive PID: the process exists (and is not a zombie).
pid_alive() {
  local state
  [[ -n $1 && -r /proc/$1/stat ]] || return 1
  state=$(awk '{print $3}' 2>/dev/null <"/proc/$1/stat") || return 1
  [[ -n $state && $state != Z ]]
}

# pid_cmdline_has PID STRING: the command line of PID contains STRING, so a
# recycled pid is never mistaken for ours.
pid_cmdline_has() {
  local cmd
  pid_alive "$1" || return 1
  cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline") || return 1
  [[ $cmd == *"$2"* ]]
}

# read_pid FILE: print the pid stored in FILE (first line), or nothing.
read_pid() {
  local pid=
  if [[ -r $1 ]]; then
    IFS= read -r pid <"$1" || true
  fi
  [[ $pid =~ ^[0-9]+$ ]] && printf '%s\n' "$pid"
  return 0
}

# pids_with_arg STRING: pids of processes whose command line contains STRING
# (an exact path of ours, such as a config file in the run dir).
pids_with_arg() {
  local f pid cmd
  for f in /proc/[0-9]*/cmdline; do
    pid=${f#/proc/}
    pid=${pid%/cmdline}
    [[ $pid == "$$" ]] && continue
    cmd=$(tr '\0' ' ' 2>/dev/null <"$f") || continue
    [[ $cmd == *"$1"* ]] && printf '%s\n' "$pid"
  done
  return 0
}

# stop_pids SECONDS PID...: SIGTERM every PID, wait up to SECONDS for all to
# exit, then SIGKILL the rest and wait up to 5 s more. Returns 1 if any still
# lives after that.
stop_pids() {
  local secs=$1 pid
  shift
  (($# > 0)) || return 0
  for pid in "$@"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  if ! wait_until "$secs" none_alive "$@"; then
    for pid in "$@"; do
      kill -KILL "$pid" 2>/dev/null || true
    done
    wait_until 5 none_alive "$@" || return 1
  fi
  return 0
}

# none_alive PID...: no PID is alive.
none_alive() {
  local pid
  for pid in "$@"; do
    pid_alive "$pid" && return 1
  done
  return 0
}

# bounded SECONDS COMMAND...: run COMMAND, killed after SECONDS (and SIGKILLed
# 10 s later if it ignores that). Always `timeout --foreground`: a plain
# `timeout` moves COMMAND into a background process group, and in a real
# terminal anything that then touches the tty (apt/dpkg restoring terminal
# modes, stty, a JVM) gets SIGTTOU and stops forever. CI has no terminal and
# never sees it; tests/unit/test_scripts_tty.py runs this under a pty.
# The price of --foreground: only COMMAND itself is timed out, not children
# it leaves behind.
bounded() {
  local secs=$1
  shift
  timeout --foreground -k 10 "$secs" "$@"
}

# ---- ports ------------------------------------------------------------------

# port_in_use PORT: something listens on TCP PORT (any address).
port_in_use() {
  if command -v ss >/dev/null 2>&1; then
    [[ -n $(ss -ltnH "sport = :$1" 2>/dev/null) ]]
  else
    bounded 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
  fi
}

# port_user PORT: "pid N, NAME" of the listener on PORT when ss can tell
# (root, or a process of ours), else "unknown process".
port_user() {
  local line
  line=$(ss -ltnpH "sport = :$1" 2>/dev/null | grep -o 'users:(("[^"]*",pid=[0-9]*' | head -n 1) || true
  if [[ -n $line ]]; then
    line=${line#users:((\"}
    printf 'pid %s, %s\n' "${line##*pid=}" "${line%%\"*}"
  else
    printf 'unknown process\n'
  fi
}

# require_free_port PORT WHAT HINT: die with one line if PORT is taken.
require_free_port() {
  if port_in_use "$1"; then
    die "port $1 ($2) is already in use by another program ($(port_user "$1")); stop it or $3"
  fi
}

# tcp_open PORT: a TCP connection to 127.0.0.1:PORT succeeds within 2 s.
tcp_open() {
  bounded 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# ---- privileges -------------------------------------------------------------

is_root() {
  [[ $(id -u) == 0 ]]
}
