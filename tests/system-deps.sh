#!/usr/bin/env bash
# What the tests need beyond Python, Java and Maven, from Debian's packages: headless Chromium (the
# dashboard test) and openssl (the https receiver of the outbound sender test). Installs only what is
# missing; `make test` runs it, so a fresh machine needs nothing by hand.
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium chromium-driver)
command -v openssl >/dev/null || missing+=(openssl)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
  echo "the tests need: ${missing[*]} (Debian packages); install them as root: apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "installing for the tests: ${missing[*]}"
$SUDO apt-get update
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
