#!/usr/bin/env bash
# Build the fedgen-tools image without a container registry: a Debian root file system made by
# debootstrap from Debian packages (the mirror is the only download besides the Python wheels),
# the fedgen package in /opt/fedgen, then `tar | podman import`. The same content as the
# Containerfile next to this script; run as root (debootstrap and chroot need it).
#
#   sudo images/fedgen-tools/build.sh                  # image named as the rules' FEDGEN_IMAGE
#   sudo images/fedgen-tools/build.sh -n localhost/fedgen-tools:test -p plink2,bcftools
#   images/fedgen-tools/build.sh --dry-run             # what would be built, nothing done
#
# Prints the image id and digest at the end; put the digest in the site's allow-list record.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
rules="$repo/workflows/federated-gwas/workflow/rules/common.smk"

usage() {
  cat <<EOF
usage: build.sh [options]

  -n, --name NAME       image name (default: FEDGEN_IMAGE of
                        workflows/federated-gwas/workflow/rules/common.smk, without docker://)
  -p, --packages LIST   Debian packages, comma- or space-separated
                        (default: images/fedgen-tools/packages.txt)
  -m, --mirror URL      Debian mirror (default: http://deb.debian.org/debian); a
                        snapshot.debian.org/archive/debian/<time>/ URL fixes the package versions
  -s, --suite SUITE     Debian suite (default: bookworm)
  -r, --root DIR        build the root file system in DIR (must not exist or be empty;
                        default: a new directory under \${TMPDIR:-/var/tmp})
  -k, --keep-root       keep the root file system after the import
      --pip-cert FILE   CA bundle pip uses in the chroot (a build machine behind a TLS-
                        intercepting proxy); not kept in the image
      --no-fedgen       Debian packages only, without the fedgen Python package
      --dry-run         print the image name, suite, mirror and packages, then exit
  -h, --help            this text
EOF
}

die() {
  echo "build.sh: $*" >&2
  exit 1
}

name=""
packages=""
mirror="http://deb.debian.org/debian"
suite="bookworm"
root=""
keep=0
with_fedgen=1
dry_run=0
pip_cert=""
while (($#)); do
  case $1 in
    -n | --name) name=${2:?"$1 needs a value"}; shift 2 ;;
    -p | --packages) packages=${2:?"$1 needs a value"}; shift 2 ;;
    -m | --mirror) mirror=${2:?"$1 needs a value"}; shift 2 ;;
    -s | --suite) suite=${2:?"$1 needs a value"}; shift 2 ;;
    -r | --root) root=${2:?"$1 needs a value"}; shift 2 ;;
    -k | --keep-root) keep=1; shift ;;
    --no-fedgen) with_fedgen=0; shift ;;
    --pip-cert) pip_cert=${2:?"$1 needs a value"}; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

if [[ -z $name ]]; then
  name=$(sed -n 's|^FEDGEN_IMAGE = "docker://\(.*\)"$|\1|p' "$rules")
  [[ -n $name ]] || die "no FEDGEN_IMAGE = \"docker://...\" in $rules; pass --name"
fi
if [[ -z $packages ]]; then
  packages=$(sed -e 's/#.*//' "$here/packages.txt")
fi
# One comma-separated list for debootstrap --include.
read -r -a pkg_array <<<"$(tr ',\n' '  ' <<<"$packages")"
((${#pkg_array[@]})) || die "no packages given"
include=$(IFS=,; echo "${pkg_array[*]}")

echo "image:    $name"
echo "suite:    $suite ($mirror)"
echo "packages: $include"
echo "fedgen:   $( ((with_fedgen)) && echo "from $repo" || echo "not installed")"
((dry_run)) && exit 0

[[ $(id -u) -eq 0 ]] || die "run as root (debootstrap and chroot need it), e.g. with sudo"
[[ -z $pip_cert || -r $pip_cert ]] || die "--pip-cert $pip_cert is not readable"
for cmd in debootstrap podman tar chroot mount umount; do
  command -v "$cmd" >/dev/null || die "$cmd not found (Debian: apt-get install debootstrap podman)"
done

if [[ -z $root ]]; then
  root=$(mktemp -d "${TMPDIR:-/var/tmp}/fedgen-tools.XXXXXX")
elif [[ -e $root && -n $(ls -A "$root") ]]; then
  die "$root is not empty"
fi
mkdir -p "$root"
root=$(cd "$root" && pwd)

path=/opt/fedgen/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Commands in the new root get a clean environment: nothing of this machine's pip or proxy
# configuration (PIP_*, SSL_*, ...) leaks into the build.
in_root() {
  chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH="$path" "$@"
}

proc_mounted=0
cleanup() {
  if ((proc_mounted)); then umount "$root/proc" || true; fi
  if ((keep)); then
    echo "root file system kept in $root"
  else
    rm -rf --one-file-system "$root"
  fi
}
trap cleanup EXIT

echo "== debootstrap --variant=minbase $suite"
debootstrap --variant=minbase --include="$include" "$suite" "$root" "$mirror"

# /proc for the steps below: Debian's plink2 wrapper reads /proc/cpuinfo to pick its build, java
# finds its libraries through /proc/self/exe.
mount -t proc proc "$root/proc"
proc_mounted=1

if ((with_fedgen)); then
  echo "== fedgen package into /opt/fedgen"
  src="$root/tmp/fedgen-src"
  mkdir -p "$src"
  if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # The working tree's files that git tracks or would track (no .venv, no run outputs).
    git -C "$repo" ls-files -z --cached --others --exclude-standard \
      | tar -C "$repo" --null --ignore-failed-read -T - -c | tar -C "$src" -x
  else
    tar -C "$repo" --exclude=.venv --exclude=.git --exclude=demo-run -c . | tar -C "$src" -x
  fi
  pip_env=()
  if [[ -n $pip_cert ]]; then
    cp "$pip_cert" "$root/tmp/pip-ca.pem"
    pip_env=(PIP_CERT=/tmp/pip-ca.pem)  # an environment variable reaches pip's build subprocess
  fi
  in_root python3 -m venv /opt/fedgen
  in_root "${pip_env[@]}" /opt/fedgen/bin/pip install --no-cache-dir --prefer-binary /tmp/fedgen-src
  rm -rf "$src" "$root/tmp/pip-ca.pem"
fi

echo "== checking the tools"
# Each tool of the package list (and fedgen) must run; the first line of its answer is shown.
declare -A check_of=(
  [plink2]="plink2 --version" [plink1.9]="plink1.9 --version" [bcftools]="bcftools --version"
  [tabix]="tabix --version" [beagle]="beagle" [default-jre-headless]="java -version"
  [python3]="python3 --version"
)
checks=()
for pkg in "${pkg_array[@]}"; do
  if [[ -n ${check_of[$pkg]:-} ]]; then checks+=("${check_of[$pkg]}"); fi
done
if ((with_fedgen)); then checks+=("fedgen --version"); fi
for check in "${checks[@]}"; do
  out=$(in_root sh -c "$check" 2>&1) || die "'$check' fails in the image: $out"
  echo "$check: ${out%%$'\n'*}"
done
umount "$root/proc"
proc_mounted=0
# shellcheck disable=SC2016  # a dpkg-query format, not a shell expansion
in_root dpkg-query -W -f '${Package} ${Version}\n' "${pkg_array[@]}"

# Nothing of the build machine or the package caches in the image.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/tmp/*
: >"$root/etc/resolv.conf"
rm -f "$root/etc/hostname"

echo "== podman import $name"
id=$(tar --numeric-owner --sort=name -C "$root" -c . | podman import \
  --change "ENV PATH=$path" \
  --change 'CMD ["/bin/bash"]' \
  --change 'LABEL org.opencontainers.image.title="fedgen-tools"' \
  --change "LABEL org.opencontainers.image.base.name=\"debian:$suite (debootstrap)\"" \
  --message "fedgen-tools: debootstrap $suite + ${include}" \
  - "$name")
digest=$(podman image inspect --format '{{.Digest}}' "$name")
echo "image:  $name"
echo "id:     $id"
echo "digest: $digest"
