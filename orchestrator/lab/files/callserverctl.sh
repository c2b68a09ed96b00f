#!/usr/bin/env bash
# callserverctl: the lab's service manager for one call-server host, standing in
# for the systemd unit used in production. Installed as <root>/bin/callserverctl.
#
#   callserverctl start|stop|restart|status|version
#   callserverctl check [RELEASE_DIR]     kamailio -c on a release with this host's args
#
# Host layout (<root> is the parent of bin/):
#   releases/<version>/   release bundles (manifest.yaml + payload)
#   current -> releases/<version>
#   host.args             one kamailio argument per line (listen address, -A defines)
#   run/                  pidfile, control socket;  log/kamailio.log
# Exit codes: 0 ok, 1 failure, 3 (status) stopped, 4 (status) crashed.
set -euo pipefail

ROOT=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
RUN=$ROOT/run
LOG=$ROOT/log/kamailio.log
PIDFILE=$RUN/kamailio.pid
CTL=$RUN/ctl.sock
KAMAILIO=${KAMAILIO:-/usr/sbin/kamailio}
KAMCMD=${KAMCMD:-/usr/sbin/kamcmd}
# generous: a loaded 2-core CI machine can take seconds to start a Kamailio (bounded anyway)
READY_TIMEOUT=${READY_TIMEOUT:-15}

manifest_value() {  # $1 release dir, $2 key
  sed -n "s/^$2: *//p" "$1/manifest.yaml" | head -n 1 | tr -d "'\""
}

kamailio_args() {  # $1 release dir; fills ARGS
  local rel=$1 entry
  entry=$(manifest_value "$rel" entrypoint)
  ARGS=(-f "$rel/${entry:-kamailio.cfg}" -A "RELEASE=\"$(manifest_value "$rel" version)\""
        -A "CTL_SOCKET=\"unix:$CTL\"")
  while IFS= read -r line || [ -n "$line" ]; do
    [ -n "$line" ] && ARGS+=("$line")
  done < "$ROOT/host.args"
}

pid_alive() {  # a zombie (reaped late by PID 1) counts as dead
  local pid=$1 state
  [ -r "/proc/$pid/stat" ] || return 1
  state=$(sed 's/.*) //' "/proc/$pid/stat" | cut -d' ' -f1)
  [ "$state" != Z ] && [ "$state" != X ] && grep -qa kamailio "/proc/$pid/cmdline"
}

running_pid() {
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null || true)
  [ -n "$pid" ] && pid_alive "$pid" && echo "$pid"
}

rpc() { "$KAMCMD" -s "unix:$CTL" "$@" 2>&1; }

ready() {
  local out
  out=$(rpc core.uptime) || return 1
  ! grep -qi error <<<"$out"
}

reap_orphans() {
  # After `kill -9` of the main process its workers live on, still bound to the SIP
  # port. They share the dead main's process group (setsid below): clear it out.
  local old
  old=$(cat "$PIDFILE" 2>/dev/null || true)
  if [ -n "$old" ] && ! pid_alive "$old"; then kill -KILL -- "-$old" 2>/dev/null || true; fi
}

do_start() {
  local pid rel i
  if pid=$(running_pid); then echo "already running pid $pid"; return 0; fi
  reap_orphans
  rel=$(readlink -f "$ROOT/current") || { echo "no current release" >&2; return 1; }
  kamailio_args "$rel"
  mkdir -p "$RUN" "$(dirname "$LOG")"
  rm -f "$CTL" "$PIDFILE"
  echo "--- $(date -u +%FT%TZ) start $(manifest_value "$rel" version)" >> "$LOG"
  setsid "$KAMAILIO" "${ARGS[@]}" -DD -E -P "$PIDFILE" -Y "$RUN" -n 2 -m 64 -M 8 \
    >> "$LOG" 2>&1 < /dev/null &
  local child=$!
  for ((i = 0; i < READY_TIMEOUT * 50; i++)); do
    if ready; then echo "started $(manifest_value "$rel" version) pid $(cat "$PIDFILE")"; return 0; fi
    if ! pid_alive "$child"; then break; fi
    sleep 0.02
  done
  echo "kamailio did not become ready; last log lines:" >&2
  tail -n 5 "$LOG" >&2
  kill -9 "$child" 2>/dev/null || true
  return 1
}

do_stop() {
  local pid i
  if ! pid=$(running_pid); then reap_orphans; rm -f "$PIDFILE" "$CTL"; echo stopped; return 0; fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 250; i++)); do pid_alive "$pid" || break; sleep 0.02; done
  # the whole process group: no worker may outlive its main process
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$PIDFILE" "$CTL"
  echo stopped
}

case "${1:-}" in
  start) do_start ;;
  stop) do_stop ;;
  restart) do_stop >/dev/null; do_start ;;
  status)
    if pid=$(running_pid); then
      echo "running pid $pid release $(rpc cfg.get callfleet release)"
    elif [ -e "$PIDFILE" ]; then echo crashed; exit 4
    else echo stopped; exit 3; fi ;;
  version) rpc cfg.get callfleet release ;;
  check)
    rel=$(readlink -f "${2:-$ROOT/current}")
    kamailio_args "$rel"
    # the parse errors first (kamailio -c surrounds them with INFO lines)
    out=$("$KAMAILIO" -c "${ARGS[@]}" 2>&1) && rc=0 || rc=$?
    { grep -E "CRITICAL|ERROR" <<<"$out" | sed 's/^ *[0-9]*([0-9]*) //' || true; tail -n 3 <<<"$out"; } | head -n 8 >&2
    exit "$rc" ;;
  *) echo "usage: callserverctl start|stop|restart|status|version|check [RELEASE_DIR]" >&2; exit 2 ;;
esac
