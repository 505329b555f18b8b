#!/usr/bin/env bash
# Build a small container image from Debian packages, without a registry, and print its
# digest reference (what a site pins in node.yaml allowed_images).
#
#   images/build-debian-image.sh [--rebuild] [--suite SUITE] [--mirror URL] NAME [PACKAGE...]
#
#   debootstrap --variant=minbase --include=PACKAGE,... SUITE ROOT MIRROR
#   tar -C ROOT -c . | podman import - NAME
#
# NAME is e.g. localhost/fedgen-tools:bookworm (a name without '/' gets 'localhost/').
# If the image NAME already exists it is reused (debootstrap takes a minute or more); pass
# --rebuild to build it again. The last line of stdout is NAME-without-tag@sha256:DIGEST.
# Needs root (debootstrap), debootstrap and podman; set CONTAINERS_CONF like the node does.
set -euo pipefail

suite=bookworm
mirror=http://deb.debian.org/debian
rebuild=0
while (($#)); do
  case $1 in
    --rebuild) rebuild=1; shift ;;
    --suite) suite=$2; shift 2 ;;
    --mirror) mirror=$2; shift 2 ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "build-debian-image: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
(($#)) || { echo "usage: $0 [--rebuild] [--suite S] [--mirror URL] NAME [PACKAGE...]" >&2; exit 2; }
name=$1; shift
[[ $name == */* ]] || name="localhost/$name"
packages=("$@")
repo=${name%@*}
if [[ ${repo##*/} == *:* ]]; then repo=${repo%:*}; fi

for cmd in podman debootstrap tar; do
  command -v "$cmd" >/dev/null || { echo "build-debian-image: $cmd is not installed" >&2; exit 1; }
done
if [[ $(id -u) -ne 0 ]]; then
  echo "build-debian-image: debootstrap needs root" >&2
  exit 1
fi

digest_ref() {
  local digest
  digest=$(podman image inspect --format '{{.Digest}}' "$name")
  echo "${repo}@${digest}"
}

# One build at a time per image name (parallel test sessions share podman's storage).
lock="/tmp/fedgen-image-$(echo "$name" | tr -c 'A-Za-z0-9._-' '_').lock"
exec 9>"$lock"
flock 9

if ((!rebuild)) && podman image exists "$name"; then
  echo "build-debian-image: reusing $name" >&2
  digest_ref
  exit 0
fi

work=$(mktemp -d /var/tmp/fedgen-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
include=()
if ((${#packages[@]})); then
  include=("--include=$(IFS=,; echo "${packages[*]}")")
fi
echo "build-debian-image: debootstrap $suite ${packages[*]:-} (about a minute)" >&2
start=$SECONDS
debootstrap --variant=minbase "${include[@]}" "$suite" "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -20 "$work/debootstrap.log" >&2
  exit 1
}
# Package caches and lists are not needed in the image.
rm -rf "$work"/root/var/cache/apt/archives/*.deb "$work"/root/var/lib/apt/lists/*
tar --numeric-owner -C "$work/root" -c . |
  podman import --change 'CMD ["/bin/sh"]' --change 'USER 65534:65534' - "$name" >/dev/null
echo "build-debian-image: built $name in $((SECONDS - start)) s" >&2
digest_ref
