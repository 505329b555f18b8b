#!/usr/bin/env bash
# Install Debian packages whose commands are missing. Usage: apt-install.sh PKG... -- CMD...
# A CMD starting with / is a file a package provides (a data package has no command).
# Idempotent: when every command is on PATH it does nothing (and needs no network).
set -euo pipefail
pkgs=(); cmds=(); seen_sep=0
for a in "$@"; do
  if [[ $a == -- ]]; then seen_sep=1; continue; fi
  if (( seen_sep )); then cmds+=("$a"); else pkgs+=("$a"); fi
done
missing=0
# runc and debootstrap live in /usr/sbin, which a non-root PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"
for c in "${cmds[@]}"; do
  if [[ $c == /* ]]; then [[ -e $c ]] && continue; else command -v "$c" >/dev/null 2>&1 && continue; fi
  echo "make install: '$c' missing"; missing=1
done
(( missing )) || exit 0
if [[ $(id -u) -ne 0 ]]; then
  SUDO=sudo
else
  SUDO=
fi
echo "make install: installing Debian packages: ${pkgs[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
