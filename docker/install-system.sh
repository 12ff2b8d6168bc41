#!/bin/sh
# The system packages the worker needs (LibreOffice nogui, python3-uno, fonts, tini, bubblewrap for the office sandbox).
# One script for the image (docker/Dockerfile runs it) and for `make setup` on the Debian 12 host, so CI
# proves the image's install steps on the same base.
#
# Usage: install-system.sh [--dev] [--list]
#   (no args)  install the runtime packages that are missing
#   --dev      also the test-only tools (poppler-utils for PDF checks, prometheus for promtool, and Debian's
#              nodejs + npm for the Gotenberg client tests when no npm is on the PATH)
#   --list     print the package names, one a line, and install nothing
#
# Idempotent: installs only what is missing; when nothing is, it says so and touches nothing (no apt-get
# update either). Runtime packages only: no compiler or -dev package, so nothing here is a build tool.
set -eu

RUNTIME_PKGS="libreoffice-core-nogui libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui
libreoffice-draw-nogui bubblewrap python3-uno fonts-liberation fonts-liberation2 fonts-dejavu-core fonts-crosextra-carlito fonts-crosextra-caladea
fonts-noto-cjk tini ca-certificates"
DEV_PKGS="poppler-utils prometheus"

dev=0
list=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    --list) list=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "install-system: unknown argument: $arg (usage: install-system.sh [--dev] [--list])" >&2; exit 2 ;;
  esac
done

PKGS="$RUNTIME_PKGS"
[ "$dev" -eq 0 ] || PKGS="$PKGS $DEV_PKGS"
# Any npm will do (a NodeSource nodejs ships its own, and Debian's npm package would conflict with it).
[ "$dev" -eq 0 ] || command -v npm >/dev/null 2>&1 || PKGS="$PKGS nodejs npm"

if [ "$list" -eq 1 ]; then
  for p in $PKGS; do echo "$p"; done
  exit 0
fi

is_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

install_packages() {
  missing=""
  for p in $PKGS; do
    is_installed "$p" || missing="$missing $p"
  done
  if [ -z "$missing" ]; then
    echo "install-system: all system packages present, nothing to install"
    return 0
  fi
  echo "install-system: installing$missing"
  $SUDO apt-get update -qq -o Acquire::Retries=3
  # `env` carries DEBIAN_FRONTEND through sudo, which would otherwise drop it.
  # shellcheck disable=SC2086
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o Acquire::Retries=3 -o Dpkg::Use-Pty=0 $missing
  still=""
  for p in $missing; do
    is_installed "$p" || still="$still $p"
  done
  if [ -n "$still" ]; then
    echo "install-system: still missing after install:$still" >&2
    exit 1
  fi
  echo "install-system: done"
}

# The nogui Writer package ships no dialog definitions (modules/swriter/ui is empty). A warm office builds the
# comment sidebar (annotation.ui) on its event loop after a document with comments or tracked changes loads,
# finds no .ui file and aborts (11 of the 258 corpus documents killed soffice.bin that way). The files come from
# the GUI package of the very same version; only the .ui directory is copied, no GUI library is installed.
install_writer_ui() {
  ui_dir=/usr/lib/libreoffice/share/config/soffice.cfg/modules/swriter/ui
  if [ -f "$ui_dir/annotation.ui" ]; then
    echo "install-system: Writer dialog definitions present"
    return 0
  fi
  version=$(dpkg-query -W -f='${Version}' libreoffice-writer-nogui)
  tmp=$(mktemp -d)
  chmod 755 "$tmp"
  if ! (cd "$tmp" && apt-get download -qq "libreoffice-writer=$version" 2>/dev/null); then
    $SUDO apt-get update -qq -o Acquire::Retries=3
    (cd "$tmp" && apt-get download -qq "libreoffice-writer=$version")
  fi
  dpkg-deb -x "$tmp"/libreoffice-writer_*.deb "$tmp/x"
  $SUDO mkdir -p "$ui_dir"
  $SUDO cp "$tmp/x$ui_dir"/*.ui "$ui_dir"/
  rm -rf "$tmp"
  echo "install-system: installed Writer dialog definitions from libreoffice-writer $version"
}

install_packages
install_writer_ui
