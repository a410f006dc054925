#!/usr/bin/env bash
# Sign (hardened runtime, secure timestamp, entitlements), notarize and staple the macOS app or dmg.
#
#   installer/macos/sign_and_notarize.sh app "dist/XNAT Uploader.app"   # before make_dmg.sh
#   installer/macos/sign_and_notarize.sh dmg dist/xnat-uploader-0.1.0-macos-arm64.dmg
#
# packaging/build.py runs both on macOS. Configuration comes from the environment:
#   MACOS_SIGN_IDENTITY     a "Developer ID Application: NAME (TEAMID)" identity in the keychain
#                           (the release workflow imports it into a throwaway keychain)
#   notarization, either    MACOS_NOTARY_PROFILE (a profile saved by `xcrun notarytool store-credentials`)
#   or                      MACOS_NOTARY_APPLE_ID, MACOS_NOTARY_TEAM_ID, MACOS_NOTARY_PASSWORD (app-specific)
# Without MACOS_SIGN_IDENTITY nothing is signed, with a message, and the exit code is 0: unsigned
# builds still work, but Gatekeeper makes users confirm the first start (see README "Install").
# Without notary credentials the app is signed but not notarized (also said, also exit 0).
set -euo pipefail

say() { printf 'sign_and_notarize: %s\n' "$*" >&2; }

if [ $# -ne 2 ] || { [ "$1" != app ] && [ "$1" != dmg ]; }; then
  echo "usage: $0 app PATH.app | dmg PATH.dmg" >&2
  exit 2
fi
mode=$1
target=${2%/}
here=$(cd "$(dirname "$0")" && pwd)
entitlements="$here/entitlements.plist"

if [ -z "${MACOS_SIGN_IDENTITY:-}" ]; then
  say "SKIPPED: MACOS_SIGN_IDENTITY is not set, so $target is NOT signed or notarized."
  exit 0
fi
[ -e "$target" ] || { say "no such $mode: $target"; exit 2; }
if ! security find-identity -v -p codesigning | grep -F -q "$MACOS_SIGN_IDENTITY"; then
  say "the identity '$MACOS_SIGN_IDENTITY' is not in the keychain (security find-identity -v -p codesigning)"
  exit 1
fi

notary_args=()
if [ -n "${MACOS_NOTARY_PROFILE:-}" ]; then
  notary_args=(--keychain-profile "$MACOS_NOTARY_PROFILE")
elif [ -n "${MACOS_NOTARY_APPLE_ID:-}" ] && [ -n "${MACOS_NOTARY_TEAM_ID:-}" ] && [ -n "${MACOS_NOTARY_PASSWORD:-}" ]; then
  notary_args=(--apple-id "$MACOS_NOTARY_APPLE_ID" --team-id "$MACOS_NOTARY_TEAM_ID" --password "$MACOS_NOTARY_PASSWORD")
fi

sign() {  # sign PATH [extra codesign args...]
  local path=$1; shift
  codesign --force --timestamp --options runtime --sign "$MACOS_SIGN_IDENTITY" "$@" "$path"
}

notarize() {  # notarize FILE (a .zip or .dmg); fails unless Apple accepts it
  local file=$1 out id status
  out=$(xcrun notarytool submit "$file" "${notary_args[@]}" --wait --timeout 2h --output-format json)
  echo "$out" >&2
  id=$(python3 -c 'import json, sys; print(json.load(sys.stdin).get("id", ""))' <<<"$out" || true)
  status=$(python3 -c 'import json, sys; print(json.load(sys.stdin).get("status", ""))' <<<"$out" || true)
  if [ "$status" != "Accepted" ]; then
    say "notarization of $file: ${status:-no status}"
    [ -n "$id" ] && xcrun notarytool log "$id" "${notary_args[@]}" >&2 || true
    exit 1
  fi
}

if [ "$mode" = app ]; then
  main_exe="$target/Contents/MacOS/$(/usr/libexec/PlistBuddy -c 'Print :CFBundleExecutable' "$target/Contents/Info.plist")"
  say "signing the binaries inside $target"
  # Every Mach-O file but the main executable (dylibs, Python extension modules, Qt framework
  # binaries): each carries its own signature, so their order does not matter...
  while IFS= read -r -d '' file; do
    [ "$file" = "$main_exe" ] && continue
    if file -b "$file" | grep -q 'Mach-O'; then
      sign "$file"
    fi
  done < <(find "$target/Contents" -type f -print0)
  # ...then the Qt frameworks as bundles (find -depth: inner before outer), then the app itself
  # with its entitlements, last, since its signature seals everything inside.
  while IFS= read -r -d '' framework; do
    sign "$framework"
  done < <(find "$target/Contents" -depth -type d -name '*.framework' -print0)
  sign "$target" --entitlements "$entitlements"
  codesign --verify --deep --strict --verbose=2 "$target"
  say "signed $target"

  if [ ${#notary_args[@]} -eq 0 ]; then
    say "SKIPPED notarization: set MACOS_NOTARY_PROFILE or MACOS_NOTARY_APPLE_ID/TEAM_ID/PASSWORD"
    exit 0
  fi
  zip="$(mktemp -d)/app.zip"
  ditto -c -k --keepParent "$target" "$zip"
  notarize "$zip"
  xcrun stapler staple "$target"
  xcrun stapler validate "$target"
  spctl --assess --type execute --verbose=2 "$target"
  say "notarized and stapled $target"
else
  sign "$target"
  codesign --verify --strict --verbose=2 "$target"
  if [ ${#notary_args[@]} -eq 0 ]; then
    say "SKIPPED notarization of $target: no notary credentials"
    exit 0
  fi
  notarize "$target"
  xcrun stapler staple "$target"
  xcrun stapler validate "$target"
  spctl --assess --type open --context context:primary-signature --verbose=2 "$target"
  say "notarized and stapled $target"
fi
