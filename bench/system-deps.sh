#!/usr/bin/env bash
# What the benchmarks need beyond Python, Java and Maven, from Debian's packages: wrk (the edge stage's
# closed-loop load generator, in its own process). Installs only what is missing; `make bench` and
# `make bench-quick` run it, and the edge stage runs it itself when wrk is not on PATH.
set -euo pipefail
missing=()
command -v wrk >/dev/null || missing+=(wrk)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo -n"; else
  echo "the benchmarks need: ${missing[*]} (Debian packages); install them as root: apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "installing for the benchmarks: ${missing[*]}"
$SUDO apt-get update
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
