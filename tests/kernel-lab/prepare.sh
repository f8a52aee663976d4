#!/bin/bash
# Prepares what the kernel lab boots: Debian's own kernel, its modules and an
# initramfs that mounts this machine's root over 9p. Idempotent and cached, so CI
# and reruns only pay for it once.
#
# Usage: tests/kernel-lab/prepare.sh            (prints the path of lab.env)
# Env:   KVMFLEET_KLAB_CACHE  cache dir (default /var/cache/kvmfleet-kernel-lab)
#
# Writes CACHE/lab.env with KLAB_KVER, KLAB_VMLINUZ, KLAB_INITRD, KLAB_MODDIR.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${KVMFLEET_KLAB_CACHE:-/var/cache/kvmfleet-kernel-lab}"
mkdir -p "$cache"

log() { echo "prepare.sh: $*" >&2; }

# Several test runs may prepare at once; one does the work, the others wait.
exec 9>"$cache/.lock"
flock 9

# --- Debian packages -------------------------------------------------------------
# The host side needs qemu, tgtd and the lab's plumbing; the guests run this very
# root filesystem, so the tools they use (lvm, sanlock, iscsiadm, nfs) are
# installed here too.
packages=(busybox-static cpio kmod xz-utils zstd iproute2 qemu-system-x86 qemu-utils
          lvm2 lvm2-lockd sanlock open-iscsi tgt nfs-kernel-server nfs-common
          multipath-tools udev)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Daemons must not start on the host: the lab starts what it needs itself.
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    made_policy=1
  fi
  apt-get update -qq || true
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  if ((made_policy)); then rm -f "$policy"; fi
fi

# --- the kernel package ----------------------------------------------------------
# Exactly the package linux-image-amd64 depends on now: a glob would download
# every old version.
kpkg=""
if apt-cache depends linux-image-amd64 >/dev/null 2>&1; then
  kpkg="$(apt-cache depends linux-image-amd64 2>/dev/null |
          sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1)"
fi
if [[ -z $kpkg ]]; then
  apt-get update -qq || true
  kpkg="$(apt-cache depends linux-image-amd64 2>/dev/null |
          sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1)"
fi
if [[ -z $kpkg ]]; then
  # No package lists: fall back to the newest kernel already in the cache.
  kpkg="$(ls -1 "$cache/kernel" 2>/dev/null | sort -V | tail -n1 || true)"
fi
[[ -n $kpkg ]] || { log "cannot find the kernel package name"; exit 1; }
[[ $kpkg =~ ^linux-image-[0-9][A-Za-z0-9.+-]*-amd64$ ]] || { log "odd package name $kpkg"; exit 1; }
kver="${kpkg#linux-image-}"

kroot="$cache/kernel/$kpkg"
if [[ ! -f $kroot/.extracted ]]; then
  log "downloading $kpkg"
  dl="$cache/debs"
  mkdir -p "$dl"
  rm -f "$dl"/*.deb
  (cd "$dl" && apt-get download -q -o APT::Sandbox::User=root "$kpkg" >&2)
  deb="$(ls -1 "$dl"/"${kpkg}"_*.deb | head -n1)"
  rm -rf "$kroot"
  mkdir -p "$kroot"
  dpkg -x "$deb" "$kroot"
  depmod -b "$kroot" "$kver"
  rm -f "$deb"
  touch "$kroot/.extracted"
fi
vmlinuz="$kroot/boot/vmlinuz-$kver"
moddir="$kroot/lib/modules"
[[ -f $vmlinuz && -d $moddir/$kver ]] || { log "bad kernel tree in $kroot"; exit 1; }

# --- the initramfs ---------------------------------------------------------------
# Rebuilt when /init, the module list or the kernel changes: its name carries a hash.
initrd_modules=(virtio_pci e1000 9pnet_virtio 9p overlay)
stamp="$( { cat "$here/guest/init"; echo "$kver"; echo "${initrd_modules[*]}"; \
            sha256sum /bin/busybox; } | sha256sum | cut -c1-16)"
initrd="$cache/initrd-$kver-$stamp.img"
if [[ ! -f $initrd ]]; then
  log "building $initrd"
  tmp="$(mktemp -d "$cache/initrd-build.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp"/{bin,sbin,dev,proc,sys,run,newroot,lib/modules}
  cp /bin/busybox "$tmp/bin/busybox"
  ldd_out="$(ldd "$tmp/bin/busybox" 2>&1 || true)"
  [[ $ldd_out == *"not a dynamic"* ]] || { log "/bin/busybox is not static"; exit 1; }
  : >"$tmp/modules.order"
  declare -A seen=()
  for m in "${initrd_modules[@]}"; do
    while read -r kind path _; do
      [[ $kind == insmod ]] || continue
      base="$(basename "$path")"
      base="${base%.xz}"; base="${base%.zst}"; base="${base%.gz}"
      [[ -n ${seen[$base]:-} ]] && continue
      seen[$base]=1
      case "$path" in
        *.xz) xz -dc "$path" >"$tmp/lib/modules/$base" ;;
        *.zst) zstd -qdc "$path" >"$tmp/lib/modules/$base" ;;
        *.gz) gzip -dc "$path" >"$tmp/lib/modules/$base" ;;
        *) cp "$path" "$tmp/lib/modules/$base" ;;
      esac
      echo "$base" >>"$tmp/modules.order"
    done < <(modprobe -d "$kroot" -S "$kver" --show-depends "$m")
  done
  install -m 0755 "$here/guest/init" "$tmp/init"
  # The kernel runs request_module()'s helper in PID 1's root, the initramfs;
  # hand it to the real modprobe of the guest's root.
  printf '#!/bin/busybox sh\nexec /bin/busybox chroot /newroot /sbin/modprobe "$@"\n' >"$tmp/sbin/modprobe"
  chmod 0755 "$tmp/sbin/modprobe"
  (cd "$tmp" && find . -print0 | sort -z | cpio --null -o -H newc --quiet | gzip -9) >"$initrd.tmp"
  mv "$initrd.tmp" "$initrd"
  # Older builds of the initramfs are of no further use.
  find "$cache" -maxdepth 1 -name 'initrd-*.img' ! -name "$(basename "$initrd")" -delete
fi

cat >"$cache/lab.env.tmp" <<EOF
KLAB_KVER=$kver
KLAB_VMLINUZ=$vmlinuz
KLAB_INITRD=$initrd
KLAB_MODDIR=$moddir
EOF
mv "$cache/lab.env.tmp" "$cache/lab.env"
echo "$cache/lab.env"
