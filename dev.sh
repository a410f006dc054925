#!/usr/bin/env bash
# Developer entry point. On a fresh Debian/Ubuntu machine:
#   ./dev.sh run    install what is missing, then start the app
#   ./dev.sh test   install what is missing, then lint and run the whole test suite
#   ./dev.sh bench  run the benchmarks (see benchmarks/README.md)
# System packages are installed with apt when missing (as root, or through sudo).
set -euo pipefail
cd "$(dirname "$0")"

VENV=${XNAT_UPLOADER_VENV:-.venv}
# Qt (offscreen and xcb), fonts, dcmtk and orthanc (a PACS) for the DICOM interop tests; binutils
# (PyInstaller's objdump), nsis and wine for the packaging tests (the Windows installer is compiled and
# run under wine64).
APT_PACKAGES=(
  libgl1 libegl1 libglib2.0-0 libxkbcommon0 libfontconfig1 libfreetype6 libdbus-1-3 fonts-dejavu-core
  xvfb xauth libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0
  dcmtk orthanc
  binutils nsis wine wine64
)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

apt_install() {
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then sudo=sudo; else
      echo "Please install these packages as root: $*" >&2; exit 1
    fi
  fi
  say "apt-get install $*"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_system() {
  command -v dpkg-query >/dev/null || return 0   # not Debian/Ubuntu: the user installs Qt's needs
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  command -v python3 >/dev/null || missing+=(python3 python3-venv)
  if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
  # The tests start their own Orthanc; the system service the package enables is not wanted.
  if [[ " ${missing[*]} " == *" orthanc "* ]] && command -v systemctl >/dev/null; then
    local sudo=""; if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
    $sudo systemctl disable --now orthanc >/dev/null 2>&1 || true
  fi
}

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    if ! python3 -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      local v; v=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
      apt_install "python3-venv" "python${v}-venv"
      python3 -m venv "$VENV"
    fi
  fi
  local stamp="$VENV/.xnat-uploader-installed" want
  want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "installing xnat-uploader and its test tools into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e '.[dev]'
    echo "$want" > "$stamp"
  fi
}

cmd=${1:-help}
shift || true
case "$cmd" in
  run)
    ensure_system; ensure_venv
    if [ "$(uname)" = Linux ] && [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ -z "${QT_QPA_PLATFORM:-}" ]; then
      say "no display found: starting offscreen (set DISPLAY, or use xvfb-run ./dev.sh run)"
      export QT_QPA_PLATFORM=offscreen
    fi
    exec "$VENV/bin/xnat-uploader" "$@"
    ;;
  test)
    ensure_system; ensure_venv
    export QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
    say "ruff"
    "$VENV/bin/ruff" check .
    say "import-linter"
    "$VENV/bin/lint-imports" --no-cache
    say "pytest"
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  bench)
    ensure_system; ensure_venv
    exec "$VENV/bin/python" benchmarks/run_all.py "$@"
    ;;
  *)
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
    [ "$cmd" = help ] || exit 2
    ;;
esac
