#!/bin/sh
# Turns the mount + UTS namespace it runs in into one kvmfleet lab "host": its own
# /run, its own libvirt state and configuration, its own virtlogd and libvirtd.
#
# Runs INSIDE `unshare --mount --uts --propagation private` (and, for a host with
# its own network, inside `ip netns exec NS` around that). It mounts over /run and
# /etc/libvirt and sets the hostname, so it refuses to run unless its mount and UTS
# namespaces differ from the caller's, which the caller names with --outer-mnt and
# --outer-uts (the targets of its own /proc/self/ns/mnt and /proc/self/ns/uts).
# Called without them, it re-executes itself under unshare and names them itself,
# so calling it directly is safe too.
#
# usage: lab-host-init.sh [--outer-mnt 'mnt:[N]' --outer-uts 'uts:[N]']
#                         --name NAME --dir HOSTDIR --uuid UUID [--address ADDR]
#                         [--cgroups] [-- COMMAND ARGS...]
#
# HOSTDIR receives lib/ log/ cache/ etc/ (bind-mounted over /var/lib/libvirt,
# /var/log/libvirt, /var/cache/libvirt, /etc/libvirt), pids/*.pid and, once
# `virsh -c qemu:///system version` answers, the file `ready`. Then COMMAND is
# exec'd (so it shares this namespace and sees this libvirtd's socket), or, without
# one, `sleep infinity` keeps the namespace alive.
set -eu

die() {
  echo "lab-host-init: $*" >&2
  exit 1
}

has_outer=0
for arg in "$@"; do
  [ "$arg" != "--" ] || break
  [ "$arg" != "--outer-mnt" ] || has_outer=1
done
if [ "$has_outer" = 0 ]; then
  here_mnt=$(readlink /proc/self/ns/mnt || true)
  here_uts=$(readlink /proc/self/ns/uts || true)
  if [ -z "$here_mnt" ] || [ -z "$here_uts" ]; then die "cannot read my own namespaces"; fi
  exec unshare --mount --uts --propagation private -- "$0" \
    --outer-mnt "$here_mnt" --outer-uts "$here_uts" "$@"
fi

name=""
dir=""
uuid=""
address=""
cgroups=0
outer_mnt=""
outer_uts=""
while [ $# -gt 0 ]; do
  case "$1" in
    --name) [ $# -ge 2 ] || die "--name needs a value"; name=$2; shift 2 ;;
    --dir) [ $# -ge 2 ] || die "--dir needs a value"; dir=$2; shift 2 ;;
    --uuid) [ $# -ge 2 ] || die "--uuid needs a value"; uuid=$2; shift 2 ;;
    --address) [ $# -ge 2 ] || die "--address needs a value"; address=$2; shift 2 ;;
    --cgroups) cgroups=1; shift ;;
    --outer-mnt) [ $# -ge 2 ] || die "--outer-mnt needs a value"; outer_mnt=$2; shift 2 ;;
    --outer-uts) [ $# -ge 2 ] || die "--outer-uts needs a value"; outer_uts=$2; shift 2 ;;
    --) shift; break ;;
    *) die "unknown argument: $1" ;;
  esac
done

[ -n "$name" ] || die "--name is required"
[ -n "$dir" ] || die "--dir is required"
[ -n "$uuid" ] || die "--uuid is required"
case "$name" in
  *[!a-z0-9-]* | -*) die "bad host name: $name" ;;
esac
case "$uuid" in
  *[!0-9a-f-]*) die "bad uuid: $uuid" ;;
esac
case "$address" in
  *[!0-9.]*) die "bad address: $address" ;;
esac
case "$dir" in
  /*) ;;
  *) die "--dir must be absolute" ;;
esac
[ -d "$dir" ] || die "no such directory: $dir"

# The safety catch: everything below mounts over the machine's paths and renames the
# host, which is only harmless in namespaces of our own. /proc/1 cannot be the
# reference: on some machines its namespace links are unreadable (and an empty
# string compares unequal to anything), so the caller names its own namespaces.
self_mnt=$(readlink /proc/self/ns/mnt || true)
self_uts=$(readlink /proc/self/ns/uts || true)
case "$outer_mnt" in mnt:\[*\]) ;; *) die "--outer-mnt 'mnt:[N]' is required (the caller's mount namespace)" ;; esac
case "$outer_uts" in uts:\[*\]) ;; *) die "--outer-uts 'uts:[N]' is required (the caller's UTS namespace)" ;; esac
case "$self_mnt" in mnt:\[*\]) ;; *) die "cannot read my own mount namespace" ;; esac
case "$self_uts" in uts:\[*\]) ;; *) die "cannot read my own UTS namespace" ;; esac
[ "$self_mnt" != "$outer_mnt" ] || die "not in a private mount namespace (run me under unshare --mount)"
[ "$self_uts" != "$outer_uts" ] || die "not in a private UTS namespace (run me under unshare --uts)"
init_mnt=$(readlink /proc/1/ns/mnt 2>/dev/null || true)
init_uts=$(readlink /proc/1/ns/uts 2>/dev/null || true)
[ -z "$init_mnt" ] || [ "$self_mnt" != "$init_mnt" ] || die "in the mount namespace of pid 1"
[ -z "$init_uts" ] || [ "$self_uts" != "$init_uts" ] || die "in the UTS namespace of pid 1"
# unshare --propagation private already did this; repeating it costs nothing and
# guarantees no mount below leaks to the machine.
mount --make-rprivate /

hostname "$name"

mount -t tmpfs -o mode=0755 "kvmfleet-lab-$name" /run
mkdir -p /run/libvirt /run/lock

mkdir -p "$dir/lib" "$dir/log" "$dir/cache" "$dir/etc" "$dir/pids"
# Mount points must exist; on a machine without libvirt-daemon-system they may not.
mkdir -p /var/lib/libvirt /var/log/libvirt /var/cache/libvirt /etc/libvirt

# The machine's /etc/libvirt is the base of the host's configuration, copied once so
# that a restarted host keeps its persistent domain definitions.
if [ ! -e "$dir/etc/.kvmfleet-seeded" ]; then
  cp -a /etc/libvirt/. "$dir/etc/"
  touch "$dir/etc/.kvmfleet-seeded"
fi

# Written on every start: these settings are what make a host of the lab work.
if [ -n "$address" ]; then
  listen_lines="listen_tcp = 1
listen_tls = 0
listen_addr = \"$address\"
auth_tcp = \"none\""
else
  listen_lines="listen_tcp = 0
listen_tls = 0"
fi
cat >"$dir/etc/libvirtd.conf" <<EOF
# Written by kvmfleet's lab-host-init.sh for lab host $name. Tests only:
# TCP without authentication, reachable only inside the lab's own network.
host_uuid = "$uuid"
$listen_lines
auth_unix_ro = "none"
auth_unix_rw = "none"
unix_sock_group = "root"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF

if [ "$cgroups" = 1 ]; then
  cgroup_line=""
else
  # Guests of two lab hosts would share cgroup paths (qemu-1-vm1 on both), and a
  # killed host would leave its cgroups behind on the machine.
  cgroup_line="cgroup_controllers = [ ]"
fi
cat >"$dir/etc/qemu.conf" <<EOF
# Written by kvmfleet's lab-host-init.sh for lab host $name.
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
# QEMU stays in this host's mount namespace, where the lab can find and kill it.
namespaces = [ ]
$cgroup_line
EOF

mount --bind "$dir/lib" /var/lib/libvirt
mount --bind "$dir/log" /var/log/libvirt
mount --bind "$dir/cache" /var/cache/libvirt
mount --bind "$dir/etc" /etc/libvirt

if [ -n "$address" ]; then
  ip link set lo up
fi

echo $$ >"$dir/pids/init.pid"
virtlogd -d
if [ -n "$address" ]; then
  libvirtd -d --listen
else
  libvirtd -d
fi
cp /run/virtlogd.pid "$dir/pids/virtlogd.pid" 2>/dev/null || true
cp /run/libvirtd.pid "$dir/pids/libvirtd.pid" 2>/dev/null || true

tries=0
until virsh -q -c qemu:///system version >/dev/null 2>&1; do
  tries=$((tries + 1))
  [ "$tries" -lt 600 ] || die "libvirtd did not answer within 60 s; see $dir/log/libvirtd.log"
  sleep 0.1
done
# libvirtd writes its pid file before it answers; copy again in case the first copy
# raced with daemonization.
cp /run/libvirtd.pid "$dir/pids/libvirtd.pid"
cp /run/virtlogd.pid "$dir/pids/virtlogd.pid"

echo "$name ready: uuid $uuid${address:+ address $address}"
touch "$dir/ready"

if [ $# -gt 0 ]; then
  exec "$@"
fi
exec sleep infinity
