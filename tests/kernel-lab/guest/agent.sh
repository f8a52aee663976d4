#!/bin/bash
# The kernel-lab guest agent: runs inside the guest, chrooted into the machine's
# root, with the per-guest job dir (a 9p share the harness made) at /run/klab.
#
# Command channel (the harness side is kernel_lab.cpp):
#   req/ID.argv    the command, its arguments separated by NUL bytes; the harness
#                  writes it under another name and renames it, so it appears whole
#   req/ID.stdin   optional, the command's standard input (written before .argv)
#   req/ID.timeout optional, seconds after which the command's process group is killed
#   out/ID.out, out/ID.err   its standard output and error
#   out/ID.rc      written last: the exit status, or "timeout"
#   ready          written once the guest is set up; holds `uname -r`
#   poweroff       made by the harness: the agent stops and PID 1 powers off
# IDs are zero-padded, so the glob's order is the order the harness sent them in.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LANG=C.UTF-8 HOME=/root
umask 022
job=/run/klab
cd /

log() { echo "klab-agent: $*" >&2; }

# --- per-guest identity, written by the harness ---------------------------------
name="" addr="" host_id="" iqn=""
hosts=()
while IFS='=' read -r key value; do
  case "$key" in
    name) name="$value" ;;
    addr) addr="$value" ;;
    host_id) host_id="$value" ;;
    iqn) iqn="$value" ;;
    host) hosts+=("$value") ;;
  esac
done <"$job/guest.env"

if [[ -n $name ]]; then
  hostname "$name"
  echo "$name" >/etc/hostname
fi
{
  echo "127.0.0.1 localhost"
  for h in "${hosts[@]}"; do echo "${h/,/ }"; done
} >/etc/hosts
# Each guest is its own machine to iSCSI targets, sanlock and anything else
# that keys on these.
[[ -n $iqn ]] && echo "InitiatorName=$iqn" >/etc/iscsi/initiatorname.iscsi
cat /proc/sys/kernel/random/uuid | tr -d - >/etc/machine-id
if [[ -n $host_id ]]; then
  mkdir -p /etc/lvm
  printf 'local {\n\thost_id = %s\n}\n' "$host_id" >/etc/lvm/lvmlocal.conf
fi

# What a real boot's tmpfiles step would make under the fresh /run (lvmlockd, for
# one, will not start without /run/lvm).
for conf in /usr/lib/tmpfiles.d/*.conf /etc/tmpfiles.d/*.conf; do
  [[ -f $conf ]] || continue
  while read -r type path mode user group _; do
    [[ $type == d || $type == D ]] || continue
    [[ $path == /run/* && $path != *%* ]] || continue
    mkdir -p "$path"
    [[ $mode =~ ^[0-7]+$ ]] && chmod "$mode" "$path"
    if [[ -n ${user:-} && $user != - ]]; then
      owner="$user"
      [[ -n ${group:-} && $group != - ]] && owner+=":$group"
      chown "$owner" "$path" 2>/dev/null
    fi
  done <"$conf"
done

ip link set lo up
if [[ -n $addr ]]; then
  nic=""
  for d in /sys/class/net/*; do
    n="${d##*/}"
    [[ $n == lo ]] && continue
    nic="$n"
    break
  done
  if [[ -n $nic ]]; then
    ip link set "$nic" up
    ip addr add "$addr" dev "$nic"
  else
    log "no network interface"
  fi
fi

mkdir -p "$job/req" "$job/out"
uname -r >"$job/ready.tmp"
mv "$job/ready.tmp" "$job/ready"
log "ready: $name $addr host_id=$host_id"

run_one() {
  local id="$1" argv=() rc limit="" pid wd=""
  mapfile -d '' -t argv <"$job/req/$id.argv"
  [[ -f $job/req/$id.timeout ]] && read -r limit <"$job/req/$id.timeout"
  local in=/dev/null
  [[ -f $job/req/$id.stdin ]] && in="$job/req/$id.stdin"
  if ((${#argv[@]} == 0)); then
    echo "empty argv" >"$job/out/$id.err"
    : >"$job/out/$id.out"
    rc=127
  else
    # Its own session, so that a timeout kills the command's whole process group;
    # daemons it starts make their own sessions and live on.
    setsid "${argv[@]}" <"$in" >"$job/out/$id.out" 2>"$job/out/$id.err" &
    pid=$!
    if [[ -n $limit ]]; then
      # The watchdog takes its sleep along when the command ends in time.
      (
        trap 'kill "$s" 2>/dev/null; exit 0' TERM
        sleep "$limit" &
        s=$!
        wait "$s" && : >"$job/out/$id.timedout" && kill -KILL -- "-$pid" "$pid" 2>/dev/null
      ) &
      wd=$!
    fi
    wait "$pid"
    rc=$?
    [[ -n $wd ]] && kill "$wd" 2>/dev/null
    if [[ -f $job/out/$id.timedout ]]; then
      rc=timeout
      rm -f "$job/out/$id.timedout"
    fi
  fi
  rm -f "$job/req/$id.argv" "$job/req/$id.stdin" "$job/req/$id.timeout"
  echo "$rc" >"$job/out/$id.rc.tmp"
  mv "$job/out/$id.rc.tmp" "$job/out/$id.rc"
}

# A FIFO nobody writes to: `read -t` on it is a sleep that forks nothing, which
# matters when every fork costs milliseconds of emulated CPU (a `sleep 0.1` loop
# kept a third of a core busy).
mkfifo /run/klab-agent.nap
exec {nap}<>/run/klab-agent.nap
shopt -s nullglob
while [[ ! -e $job/poweroff ]]; do
  reqs=("$job"/req/*.argv)
  if ((${#reqs[@]} == 0)); then
    read -r -t 0.1 -u "$nap" _
    continue
  fi
  for r in "${reqs[@]}"; do
    id="${r##*/}"
    run_one "${id%.argv}"
  done
done
log "poweroff requested"
exit 0
