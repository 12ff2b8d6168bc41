#!/bin/sh
# The system packages the worker needs (LibreOffice nogui, python3-uno, fonts, tini).
# One script for the image and for `make setup`, so CI proves the image's install steps on Debian 12.
# Idempotent: installs only what is missing. Pass --dev for test-only tools (poppler, prometheus).
set -eu
PKGS="libreoffice-core-nogui libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui
python3-uno fonts-liberation fonts-liberation2 fonts-dejavu-core fonts-crosextra-carlito fonts-crosextra-caladea
fonts-noto-cjk tini ca-certificates"
if [ "${1:-}" = "--dev" ]; then
  PKGS="$PKGS poppler-utils prometheus"
fi
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
  echo "install-system: all system packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-system: installing$missing"
$SUDO apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
