#!/usr/bin/env bash
# Builds the two MSIs from a frozen build with Debian's wixl (package wixl; msiinfo from
# msitools reads them back):
#
#   bash installer/windows/build-msi.sh PAYLOAD_DIR [OUT_DIR]
#
# PAYLOAD_DIR is PyInstaller's onedir output (dist\imza-agent from build.ps1, or the
# stand-in tests/test_msi.py makes); the native messaging manifests are written into it.
# Writes OUT_DIR/imza-agent-<version>-user.msi and imza-agent-<version>-machine.msi
# (default OUT_DIR: dist/). Code signing happens on Windows (build.ps1): wixl makes
# unsigned MSIs, signtool signs them afterwards.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
payload=$(realpath "$1")
out=$(realpath -m "${2:-$repo/dist}")
python=${PYTHON:-python3}  # needs the agent importable (platformdirs): the venv or the build env
version=$("$python" -c "import re,sys; print(re.search(r'__version__ = \"([^\"]+)\"', open(sys.argv[1]).read())[1])" "$repo/agent/__init__.py")
for exe in imza-agent.exe imza-agentw.exe imza-agent-native-host.exe; do
    [[ -f $payload/$exe ]] || { echo "build-msi.sh: $payload has no $exe" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
PYTHONPATH=$repo "$python" "$here/manifests.py" "$payload" >/dev/null
for scope in perUser perMachine; do
    suffix=$([[ $scope == perUser ]] && echo user || echo machine)
    "$python" "$here/harvest.py" "$payload" --scope "$scope" -o "$work/payload-$scope.wxs"
    # wixl resolves every Source against the working directory: the payload's.
    (cd "$payload" && wixl -a x64 -D "Scope=$scope" -D "Version=$version" \
        -o "$out/imza-agent-$version-$suffix.msi" "$here/imza-agent.wxs" "$work/payload-$scope.wxs")
    echo "$out/imza-agent-$version-$suffix.msi"
done
