#!/usr/bin/env bash
# Installs the Debian packages that building and booting keel images needs, when missing.
# Used by `make demo`, `make test` and CI. Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(
  qemu-system-x86   # boots the images (TCG)
  linux-image-amd64 # the kernel and modules put into images
  busybox-static    # the shell tools in test and demo images
  cpio              # tests list initramfs contents with an independent tool
  e2fsprogs         # keel-build formats the ext4 data disk for /var (mkfs.ext4)
  dosfstools        # tests make vfat config drives; keel-build disk formats the ESP (mkfs.fat)
  mtools            # tests copy user-data onto those drives; keel-build disk fills the ESP (mcopy)
  erofs-utils       # keel-build disk makes the read-only root (mkfs.erofs)
  systemd-boot-efi  # keel-build disk: the EFI stub of the unified kernel image
  binutils          # keel-build disk assembles the unified kernel image (objcopy)
  ovmf              # UEFI firmware for booting disk images in QEMU
  qemu-utils        # keel-build disk converts to qcow2/vhd; tests resize disks (qemu-img)
  file              # tests check that binaries are static
  iproute2          # host tests check links with `ip -j`
  dnsmasq-base      # host tests run a DHCP server in a netns
  nftables          # host tests check keel's ruleset with nft -j
  curl              # the demo and tests fetch from the guest
  ca-certificates   # keel-build puts the CA bundle into images (https sources)
  tini              # `make bench-init` compares keel init with it
  crun              # `make bench-run` compares keel run with it
  umoci             # image tests and `make bench-image`: independent OCI layer maker/unpacker
  skopeo            # image tests: OCI and docker archives from an OCI layout; pushes to the test registry
  docker-registry   # registry pull test: the registry keel pulls from (run by the test on loopback)
  python3           # image tests: hand-made layers (opaque dirs, cross-layer hard links)
)

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo is not on PATH; install the Rust toolchain (rustup) first" >&2
  exit 1
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! ls /boot/vmlinuz-* >/dev/null 2>&1; then
  echo "install-deps: no kernel in /boot after installing linux-image-amd64" >&2
  exit 1
fi
