#!/usr/bin/env bash
# Installs the Debian packages that building, booting and testing keel needs, then
# verifies every command and file the build and the tests use, and repairs what an
# install removed (e.g. a newer qemu-utils from backports removed when qemu-system-x86
# from bookworm is installed). Used by `make deps`, `make demo`, `make test` and CI.
# Needs root (or sudo) only when something is missing.
#
#   scripts/install-deps.sh          install what is missing, repair, verify
#   scripts/install-deps.sh --check  only verify; name what is missing (exit 1), install nothing
#   scripts/install-deps.sh --list   print the table: PACKAGE command|file|glob NAME
#
# Test hooks (qemu-tests/tests/install_deps.rs): KEEL_DEPS_PATH is where commands are
# looked for (default: $PATH plus /usr/sbin and /sbin); KEEL_DEPS_ROOT prefixes every
# file checked; KEEL_DEPS_APT_GET is the apt-get to run (then without sudo).
set -euo pipefail

# What each package must provide: commands (looked up on the PATH), absolute files and
# globs (at least one match). One line per package; the reason after the colon.
table=(
  "qemu-system-x86   qemu-system-x86_64           : boots the images (TCG)"
  "qemu-utils        qemu-img                     : keel-build disk converts to qcow2/vhd; tests resize disks"
  "linux-image-amd64 /boot/vmlinuz-* /lib/modules/*/modules.dep : the kernel and modules put into images"
  "busybox-static    busybox /bin/busybox         : the shell tools in test and demo images"
  "cpio              cpio                         : listing initramfs contents with an independent tool"
  "e2fsprogs         mkfs.ext4 e2fsck debugfs     : keel-build formats /var's disk; tests replay and list it"
  "dosfstools        mkfs.fat mkfs.vfat           : keel-build disk formats the ESP; tests make config drives"
  "mtools            mcopy mmd                    : keel-build disk fills the ESP; tests fill config drives"
  "erofs-utils       mkfs.erofs                   : keel-build disk makes the read-only root"
  "systemd-boot-efi  /usr/lib/systemd/boot/efi/linuxx64.efi.stub : the EFI stub of the unified kernel image"
  "binutils          objcopy                      : keel-build disk assembles the unified kernel image"
  "ovmf              /usr/share/OVMF/OVMF_CODE_4M.fd /usr/share/OVMF/OVMF_VARS_4M.fd : UEFI firmware for disk images in QEMU"
  "file              file                         : checking that binaries are static"
  "iproute2          ip                           : host tests make netns/veth and check links with ip -j"
  "dnsmasq-base      dnsmasq                      : host tests run a DHCP server in a netns"
  "nftables          nft                          : host tests check keel's ruleset with nft -j"
  "curl              curl                         : the demo: fetching from the guest"
  "ca-certificates   /etc/ssl/certs/ca-certificates.crt : keel-build puts the CA bundle into images"
  "tini              tini                         : make bench-init compares keel init with it"
  "crun              crun                         : make bench-run compares keel run with it"
  "umoci             umoci                        : image tests and bench-image: independent OCI layer tool"
  "skopeo            skopeo                       : image tests: OCI/docker archives; pushes to the test registry"
  "docker-registry   docker-registry              : registry pull test: the registry keel pulls from"
  "python3           python3 /usr/bin/python3     : image and firewall tests' helpers; the glibc seccomp rootfs"
  "util-linux        unshare nsenter              : host tests: namespaces; nsenter in keel-build's admin image"
  "openssh-server    /usr/sbin/sshd               : keel-build's admin image (the SSH server)"
  "openssh-client    ssh ssh-keygen ssh-keyscan   : the admin image makes its host keys; the SSH test and the demo log in"
  "sudo              sudo                         : the admin image: wheel users become root, as on Fedora CoreOS"
  "libpam-modules    /lib/x86_64-linux-gnu/security/pam_permit.so /lib/x86_64-linux-gnu/security/pam_deny.so : the admin image's PAM stack"
  "python3-prometheus-client /usr/lib/python3/dist-packages/prometheus_client/parser.py : the metrics QEMU test parses /metrics with it"
  "mount             mount umount                 : image tests mount the store's overlay"
  "libc-bin          ldd                          : the glibc seccomp rootfs"
  "gzip              gzip                         : first-boot tests compress files"
  "ignition          ignition-validate            : the first-boot differential test: Ignition's own validator as the oracle"
  "tar               tar                          : the glibc seccomp rootfs"
  "findutils         find xargs                   : the glibc seccomp rootfs"
  "grep              grep                         : host tests and the glibc seccomp rootfs"
  "bash              bash                         : scripts/; the glibc seccomp rootfs"
  "dash              sh                           : host tests run sh -c"
  "coreutils         cp sleep head seq ls cat sort date id env mkdir rm wc tr uname stat sha256sum echo : scripts and tests"
)

mode=install
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  --list) mode=list ;;
  *)
    echo "usage: $0 [--check | --list]" >&2
    exit 2
    ;;
esac

search_path=${KEEL_DEPS_PATH:-$PATH:/usr/sbin:/sbin}
root=${KEEL_DEPS_ROOT:-}

# The packages of the table, in order, and "PACKAGE NAME" for every check.
packages=()
checks=()
for line in "${table[@]}"; do
  read -r -a words <<<"${line%%:*}"
  packages+=("${words[0]}")
  for name in "${words[@]:1}"; do checks+=("${words[0]} $name"); done
done

kind_of() {
  case "$1" in
    *'*'*) echo glob ;;
    /*) echo file ;;
    *) echo command ;;
  esac
}

if [ "$mode" = list ]; then
  for check in "${checks[@]}"; do
    read -r pkg name <<<"$check"
    echo "$pkg $(kind_of "$name") $name"
  done
  exit 0
fi

# One check: a command must be an executable on the search path (`type -P`, so that a
# shell builtin such as echo does not count), a file must exist, a glob must match.
present() {
  local name=$1
  case "$(kind_of "$name")" in
    command) (PATH=$search_path type -P "$name" >/dev/null 2>&1) ;;
    file) [ -e "$root$name" ] ;;
    glob) compgen -G "$root$name" >/dev/null ;;
  esac
}

# Fills `failing` with "PACKAGE NAME" of every check that fails.
verify() {
  failing=()
  local check pkg name
  for check in "${checks[@]}"; do
    read -r pkg name <<<"$check"
    present "$name" || failing+=("$pkg $name")
  done
}

# "name (package), …" of `failing`.
describe_failing() {
  local out="" check pkg name
  for check in "${failing[@]}"; do
    read -r pkg name <<<"$check"
    out+="${out:+, }$name ($pkg)"
  done
  echo "$out"
}

# The packages of `failing`, each once.
failing_packages() {
  local check pkg name seen=" "
  for check in "${failing[@]}"; do
    read -r pkg name <<<"$check"
    case "$seen" in *" $pkg "*) continue ;; esac
    seen+="$pkg "
    echo "$pkg"
  done
}

installed_version() {
  local status
  status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) || return 1
  [[ "$status" == *"install ok installed"* ]] || return 1
  dpkg-query -W -f='${Version}' "$1" 2>/dev/null
}

# Packages built from one source that only work (and only co-install) at one version.
declare -A same_version_as=([qemu-utils]=qemu-system-x86 [qemu-system-x86]=qemu-utils)

# What to ask apt for: PACKAGE=VERSION when its partner is installed at a VERSION apt
# offers for it (both then come from the same release, bookworm or backports), else PACKAGE.
apt_spec() {
  local pkg=$1 partner version offered
  partner=${same_version_as[$pkg]:-}
  if [ -n "$partner" ] && version=$(installed_version "$partner") &&
    offered=$(apt-cache madison "$pkg" 2>/dev/null | awk -F'|' '{gsub(/ /, "", $2); print $2}') &&
    grep -qxF -- "$version" <<<"$offered"; then
    echo "$pkg=$version"
  else
    echo "$pkg"
  fi
}

if [ "$mode" = check ]; then
  verify
  if [ ${#failing[@]} -gt 0 ]; then
    echo "install-deps: missing: $(describe_failing)" >&2
    echo "install-deps: run scripts/install-deps.sh (as root) to install them" >&2
    exit 1
  fi
  echo "install-deps: all ${#checks[@]} commands and files present"
  exit 0
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo is not on PATH; install the Rust toolchain (rustup) first" >&2
  exit 1
fi

apt_get=(apt-get)
if [ -n "${KEEL_DEPS_APT_GET:-}" ]; then
  apt_get=("$KEEL_DEPS_APT_GET")
elif [ "$(id -u)" -ne 0 ]; then
  apt_get=(sudo env DEBIAN_FRONTEND=noninteractive apt-get)
fi
updated=no
apt_install() {
  if [ $updated = no ]; then
    "${apt_get[@]}" update -q
    updated=yes
  fi
  "${apt_get[@]}" install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef "$@"
}
export DEBIAN_FRONTEND=noninteractive

# First pass: packages not installed, or installed with something of theirs missing.
verify
want=()
while read -r pkg; do [ -n "$pkg" ] && want+=("$pkg"); done < <(
  for pkg in "${packages[@]}"; do installed_version "$pkg" >/dev/null || echo "$pkg"; done
  failing_packages
)
if [ ${#want[@]} -gt 0 ]; then
  specs=()
  for pkg in $(printf '%s\n' "${want[@]}" | awk '!seen[$0]++'); do specs+=("$(apt_spec "$pkg")"); done
  echo "install-deps: installing ${specs[*]}"
  apt_install --reinstall "${specs[@]}" || echo "install-deps: apt-get failed; checking what is missing" >&2
fi

# Second pass: what the first one removed or left broken, reinstalled at the version
# that goes with what is installed now; a pair apt cannot match is installed together.
verify
if [ ${#failing[@]} -gt 0 ]; then
  echo "install-deps: missing after installing: $(describe_failing); reinstalling" >&2
  repair=()
  while read -r pkg; do repair+=("$pkg"); done < <(failing_packages)
  specs=()
  for pkg in "${repair[@]}"; do specs+=("$(apt_spec "$pkg")"); done
  if ! apt_install --reinstall "${specs[@]}"; then
    together=("${repair[@]}")
    for pkg in "${repair[@]}"; do
      partner=${same_version_as[$pkg]:-}
      [ -n "$partner" ] && together+=("$partner")
    done
    echo "install-deps: installing ${together[*]} together from one release" >&2
    apt_install --reinstall "${together[@]}"
  fi
  verify
fi

if [ ${#failing[@]} -gt 0 ]; then
  echo "install-deps: still missing: $(describe_failing)" >&2
  exit 1
fi
echo "install-deps: all ${#checks[@]} commands and files present"
