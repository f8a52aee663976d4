#!/bin/sh
# Installs every Debian 12 package kvmfleet needs to build, test and run, and creates
# what libvirt's packaging scripts would have created on a machine without systemd.
# Idempotent: when everything is present it changes nothing and never calls apt.
#
# usage: scripts/install-deps.sh [--check]
#   --check  only report what is missing (exit 1 if anything is)
set -eu

check_only=0
case "${1:-}" in
  --check) check_only=1 ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

# Build tools and libraries; clang-format checks the sources' formatting
# (scripts/format.sh).
packages="
cmake make ninja-build g++ pkg-config clang-format
libvirt-dev libxml2-dev nlohmann-json3-dev libspdlog-dev libboost-dev
libboost-program-options-dev libssl-dev libsqlite3-dev libyaml-cpp-dev
libgtest-dev libgmock-dev libbenchmark-dev
"
# Hypervisor stack a kvmfleet host runs (libvirt-daemon holds the dir, fs, logical
# and iscsi storage pool backends on Debian 12); genisoimage makes cloud-init seeds.
packages="$packages
libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
qemu-system-x86 qemu-utils qemu-block-extra
genisoimage
"
# Storage and locking the lab exercises (see docs/lab.md and the kernel lab).
packages="$packages
lvm2 lvm2-lockd sanlock libsanlock-dev open-iscsi libiscsi-bin tgt
kmod cpio busybox-static
"
# Lab, end-to-end tests and benchmarks.
packages="$packages
iproute2 util-linux coreutils passwd curl openssl python3 python3-jsonschema python3-yaml
wrk nginx-light etcd-server etcd-client
openipmi ipmitool fence-agents
"

missing=""
for p in $packages; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = "installed" ] || missing="$missing $p"
done

if [ -n "$missing" ]; then
  if [ "$check_only" = 1 ]; then
    echo "missing packages:$missing"
  else
    [ "$(id -u)" = 0 ] || { echo "install-deps: run as root to install:$missing" >&2; exit 1; }
    echo "install-deps: installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    # Wait for another apt run on the same machine instead of failing on its lock.
    apt-get -o DPkg::Lock::Timeout=600 update -q
    # shellcheck disable=SC2086  # the list is meant to split into words
    apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends $missing
  fi
fi

# What libvirt's maintainer scripts create on a systemd machine: libvirtd's QEMU
# driver refuses to start when its build-time default user does not exist, even
# with user = "root" in qemu.conf.
need_user=0
getent group libvirt-qemu >/dev/null || need_user=1
getent passwd libvirt-qemu >/dev/null || need_user=1
dirs="/var/lib/libvirt /var/log/libvirt /var/cache/libvirt /etc/libvirt"
need_dirs=0
for d in $dirs; do
  [ -d "$d" ] || need_dirs=1
done

if [ "$check_only" = 1 ]; then
  [ "$need_user" = 0 ] || echo "missing: user/group libvirt-qemu"
  [ "$need_dirs" = 0 ] || echo "missing: one of $dirs"
  [ -z "$missing" ] && [ "$need_user" = 0 ] && [ "$need_dirs" = 0 ] && { echo "all present"; exit 0; }
  exit 1
fi

if [ "$need_user" = 1 ]; then
  getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
  getent passwd libvirt-qemu >/dev/null ||
    useradd -r -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
fi
if [ "$need_dirs" = 1 ]; then
  # Mount points of the lab's per-host state; libvirtd creates what is below them.
  # shellcheck disable=SC2086  # a list of paths without spaces
  mkdir -p $dirs
fi
echo "install-deps: all dependencies present"
