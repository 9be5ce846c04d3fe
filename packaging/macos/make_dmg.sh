#!/usr/bin/env bash
# macOS: sign (optional), package and notarise (optional) "C2S Desktop.app" as a .dmg.
#
#   packaging/macos/make_dmg.sh dist/"C2S Desktop.app" dist/C2S-Desktop-0.1.0-arm64.dmg
#
# Environment (all optional; without them the .dmg is unsigned and Gatekeeper asks the user to
# confirm on first start, see docs/INSTALL.md):
#   MACOS_SIGN_IDENTITY   "Developer ID Application: NAME (TEAMID)"
#   MACOS_NOTARY_PROFILE  a keychain profile made with `xcrun notarytool store-credentials`
set -euo pipefail

APP=${1:?usage: make_dmg.sh APP_BUNDLE OUT.dmg}
DMG=${2:?usage: make_dmg.sh APP_BUNDLE OUT.dmg}
HERE=$(cd "$(dirname "$0")" && pwd)

if [ -n "${MACOS_SIGN_IDENTITY:-}" ]; then
    # Hardened runtime; the entitlements allow the Python runtime's executable memory and the
    # unsigned-by-Apple shared libraries (llama.cpp, Qt) loaded from inside the bundle.
    codesign --force --deep --options runtime --timestamp \
        --entitlements "$HERE/entitlements.plist" --sign "$MACOS_SIGN_IDENTITY" "$APP"
    codesign --verify --deep --strict --verbose=2 "$APP"
fi

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
cp -R "$APP" "$STAGE/"
ln -s /Applications "$STAGE/Applications"
rm -f "$DMG"
hdiutil create -volname "C2S Desktop" -srcfolder "$STAGE" -fs HFS+ -format UDZO \
    -imagekey zlib-level=9 "$DMG"

if [ -n "${MACOS_SIGN_IDENTITY:-}" ]; then
    codesign --force --timestamp --sign "$MACOS_SIGN_IDENTITY" "$DMG"
fi
if [ -n "${MACOS_NOTARY_PROFILE:-}" ]; then
    xcrun notarytool submit "$DMG" --keychain-profile "$MACOS_NOTARY_PROFILE" --wait
    xcrun stapler staple "$DMG"
fi
echo "built $DMG ($(du -h "$DMG" | cut -f1))"
