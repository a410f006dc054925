#!/usr/bin/env bash
# Wrap a macOS .app in a compressed .dmg with an "Applications" link, so that users install by
# dragging the app onto the link. Runs on macOS only (hdiutil).
#
#   installer/macos/make_dmg.sh "dist/XNAT Uploader.app" dist/xnat-uploader-0.1.0-macos-arm64.dmg ["Volume name"]
#
# Sign the .app before (sign_and_notarize.sh app ...): the .dmg holds a copy of it.
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 APP.app OUT.dmg [VOLUME_NAME]" >&2
  exit 2
fi
app=${1%/}
out=$2
volume=${3:-$(basename "$app" .app)}

[ -d "$app" ] || { echo "make_dmg: no such app: $app" >&2; exit 2; }
command -v hdiutil >/dev/null || { echo "make_dmg: hdiutil not found (this runs on macOS only)" >&2; exit 2; }

staging=$(mktemp -d "${TMPDIR:-/tmp}/xnat-uploader-dmg.XXXXXX")
trap 'rm -rf "$staging"' EXIT
# ditto keeps symlinks, extended attributes and the code signature intact (cp -R may not).
ditto "$app" "$staging/$(basename "$app")"
ln -s /Applications "$staging/Applications"

rm -f "$out"
# hdiutil sometimes fails on CI runners with "Resource busy" (a Spotlight/XProtect scan of the new
# image): retry with a growing pause, as Picard's build does.
for attempt in 1 2 3 4 5; do
  if hdiutil create -volname "$volume" -srcfolder "$staging" -fs HFS+ -format UDZO \
      -imagekey zlib-level=9 -ov "$out"; then
    break
  fi
  if [ "$attempt" = 5 ]; then
    echo "make_dmg: hdiutil create failed 5 times" >&2
    exit 1
  fi
  echo "make_dmg: hdiutil create failed, retrying in $((attempt * 5)) s" >&2
  sleep $((attempt * 5))
done
hdiutil verify "$out" >/dev/null
echo "make_dmg: wrote $out" >&2
