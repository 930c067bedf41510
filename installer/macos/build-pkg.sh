#!/usr/bin/env bash
# Builds imza-agent-<version>-<arch>.pkg on macOS (12 or later, Xcode command line tools):
#
#   bash installer/macos/build-pkg.sh [OUT_DIR]
#
# Signing and notarisation happen when these are set (docs/macos.md has the whole story):
#   IMZA_CODESIGN_IDENTITY   "Developer ID Application: <name> (<team>)"  the app's code
#   IMZA_INSTALLER_IDENTITY  "Developer ID Installer: <name> (<team>)"    the .pkg
#   IMZA_NOTARY_PROFILE      a notarytool keychain profile
#                            (xcrun notarytool store-credentials <profile> --apple-id …
#                             --team-id … --password <app-specific password>)
# Without them the package is built unsigned (CI), and Gatekeeper will refuse it on other
# Macs. Not run on this project's development machine (Linux); .github/workflows/macos.yml
# runs it on GitHub's macos-latest.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$(cd "$repo" && mkdir -p "${1:-dist}" && cd "${1:-dist}" && pwd)
work=$repo/build/macos
rm -rf "$work" && mkdir -p "$work"
python=${PYTHON:-python3.11}

"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --upgrade pip
"$work/venv/bin/python" -m pip install -q "$repo[formats]" "pyinstaller>=6.10,<7"
version=$("$work/venv/bin/python" -c "import agent; print(agent.__version__)")

# 1. The app (signed with the hardened runtime when IMZA_CODESIGN_IDENTITY is set: every
#    Mach-O inside, then the bundle, which notarisation requires).
IMZA_VERSION=$version "$work/venv/bin/python" -m PyInstaller --noconfirm --clean \
    --distpath "$work/dist" --workpath "$work/work" "$here/imza-agent.spec"
app=$work/dist/imza-agent.app
if [[ -n ${IMZA_CODESIGN_IDENTITY:-} ]]; then
    codesign --force --deep --options runtime --timestamp \
        --entitlements "$here/entitlements.plist" --sign "$IMZA_CODESIGN_IDENTITY" "$app"
    codesign --verify --deep --strict --verbose=2 "$app"
fi
"$app/Contents/MacOS/imza-agent" --help >/dev/null  # the frozen program starts

# 2. The staging root: what the package puts where.
stage=$work/stage
mkdir -p "$stage/Applications" "$stage/Library/LaunchAgents" \
    "$stage/Library/Application Support/imza-agent" "$stage/usr/local/bin"
ditto "$app" "$stage/Applications/imza-agent.app"
install -m 0644 "$here/az.imza.agent.plist" "$stage/Library/LaunchAgents/az.imza.agent.plist"
install -m 0755 "$here/uninstall.sh" "$stage/Library/Application Support/imza-agent/uninstall.sh"
ln -s /Applications/imza-agent.app/Contents/MacOS/imza-agent "$stage/usr/local/bin/imza-agent"
"$work/venv/bin/python" "$here/manifests.py" "$stage" >/dev/null

# 3. The component package and the product archive around it.
pkgbuild --root "$stage" --identifier az.imza.agent --version "$version" \
    --scripts "$here/scripts" --install-location / --ownership recommended \
    "$work/imza-agent-component.pkg"
mkdir -p "$work/resources"
cp "$repo/LICENSE" "$work/resources/LICENSE.txt"
# The frozen build is for this Mac's architecture (PyInstaller needs every wheel in
# universal2 form for a fat build, and pyscard has none): one package per architecture.
arch=$(uname -m)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" "$here/Distribution.xml" > "$work/Distribution.xml"
pkg=$out/imza-agent-$version-$arch.pkg
sign=()
[[ -n ${IMZA_INSTALLER_IDENTITY:-} ]] && sign=(--sign "$IMZA_INSTALLER_IDENTITY" --timestamp)
productbuild --distribution "$work/Distribution.xml" --package-path "$work" \
    --resources "$work/resources" ${sign[@]+"${sign[@]}"} "$pkg"  # bash 3.2: empty array

# 4. Notarisation: Apple scans the signed package, then the ticket is stapled to it so
#    Gatekeeper accepts it offline.
if [[ -n ${IMZA_NOTARY_PROFILE:-} ]]; then
    xcrun notarytool submit "$pkg" --keychain-profile "$IMZA_NOTARY_PROFILE" --wait
    xcrun stapler staple "$pkg"
    xcrun stapler validate "$pkg"
    spctl --assess --type install --verbose "$pkg"
fi
echo "$pkg"
