#!/usr/bin/env bash
# Builds the Debian package from this checkout: dist/imza-agent_<version>_<arch>.deb.
#
#   bash installer/linux/build-deb.sh [OUT_DIR]
#
# The package carries its Python dependencies (pydantic 2, websockets, pyHanko, … are
# newer than Debian 12 ships) in a private environment under /usr/lib/imza-agent that runs
# on Debian's own python3, so installing it needs no pip, no network and no compiler: its
# dependencies are Debian packages only. The build needs what scripts/test.sh installs
# (gcc and libpcsclite-dev for pyscard, python3-venv) and network access to PyPI.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$(realpath -m "${1:-$repo/dist}")
python=/usr/bin/python3  # Debian's: the interpreter the package runs on
pyver=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
version=$("$python" -c "import re,sys; print(re.search(r'__version__ = \"([^\"]+)\"', open(sys.argv[1]).read())[1])" "$repo/agent/__init__.py")
arch=$(dpkg --print-architecture)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage=$work/stage
prefix=/usr/lib/imza-agent
site=$stage$prefix/lib/python$pyver/site-packages

# A pip that runs on the build machine; the wheels it picks are for Debian's python3 ABI.
"$python" -m venv "$work/tools"
"$work/tools/bin/python" -m pip install -q --upgrade pip build
"$work/tools/bin/python" -m build -q --wheel --outdir "$work/wheel" "$repo" >/dev/null
wheel=$(ls "$work"/wheel/imza_agent-*.whl)
"$work/tools/bin/python" -m pip install -q --no-compile --target "$site" "$wheel[formats]"
rm -rf "$site/bin"  # console scripts of the dependencies; ours is /usr/bin/imza-agent
# PySide6-Essentials carries QML, Quick, Designer and more that the UI process never loads
# (it uses QtCore, QtGui, QtWidgets and QtDBus: agent/ui/qt): keep what those and the
# platform plugins link to, and drop the rest (about 120 MB of the package).
qt=$site/PySide6
if [[ -d $qt ]]; then
    keep_libs='^libQt6(Core|Gui|Widgets|DBus|XcbQpa|Network|OpenGL|WaylandClient|EglFSDeviceIntegration|EglFsKmsSupport|Svg)\.so|^libicu'
    for lib in "$qt"/Qt/lib/*; do
        [[ $(basename "$lib") =~ $keep_libs ]] || rm -rf "$lib"
    done
    rm -rf "$qt"/Qt/qml "$qt"/Qt/libexec "$qt"/Qt/metatypes "$qt"/Qt/plugins/{designer,qmllint,qmltooling,sqldrivers,printsupport}
    for binding in "$qt"/Qt*.abi3.so; do
        [[ $(basename "$binding") =~ ^Qt(Core|Gui|Widgets|DBus|Network|OpenGL|Svg)\. ]] || rm -f "$binding"
    done
    rm -f "$qt"/*.pyi
    rm -rf "$qt"/include "$qt"/typesystems "$qt"/doc "$qt"/glue "$qt"/scripts
    find "$qt"/Qt/translations -name '*.qm' ! -name 'qtbase_*' -delete
    # Tools for Qt developers (designer, uic, rcc, …), not needed to run.
    find "$qt" -maxdepth 1 -type f -executable ! -name '*.so' ! -name '*.so.*' -delete
fi

# A private environment by hand: a venv's files, but no path of this build machine in
# them. Python finds pyvenv.cfg beside the executable and takes site-packages from here;
# processes the agent starts with sys.executable (token workers) get the same packages.
mkdir -p "$stage$prefix/bin"
ln -s "$python" "$stage$prefix/bin/python3"
printf 'home = /usr/bin\ninclude-system-site-packages = false\nversion = %s\n' \
    "$("$python" -c 'import platform; print(platform.python_version())')" \
    > "$stage$prefix/pyvenv.cfg"
# Byte-code compiled now, shipped in the package: nothing is written under /usr at run
# time, so `apt purge` leaves no stray __pycache__ behind.
"$python" -m compileall -q -j0 --invalidation-mode unchecked-hash -d "$prefix/lib/python$pyver/site-packages" "$site" >/dev/null

install -D -m 0755 /dev/stdin "$stage/usr/bin/imza-agent" <<SH
#!/bin/sh
# imza-agent: the local signing agent (Debian package launcher)
exec $prefix/bin/python3 -B -m agent.cli "\$@"
SH
install -D -m 0755 /dev/stdin "$stage$prefix/native-host" <<SH
#!/bin/sh
# Started by the browsers through their native messaging manifests.
exec /usr/bin/imza-agent native-host "\$@"
SH

# Native messaging manifests, system-wide, for every browser family.
PYTHONPATH=$site "$python" "$here/manifests.py" "$stage" "$prefix/native-host"
install -D -m 0644 "$here/imza-agent.desktop" "$stage/usr/share/applications/imza-agent.desktop"
install -D -m 0644 "$here/imza-agent-autostart.desktop" "$stage/etc/xdg/autostart/imza-agent.desktop"
PYTHONPATH=$site "$python" "$here/icon.py" "$stage/usr/share/icons/hicolor"
mkdir -p "$stage/usr/share/man/man1"
PYTHONPATH=$site "$python" "$here/manpage.py" "$version" | gzip -9n > "$stage/usr/share/man/man1/imza-agent.1.gz"
# The browser extension's packages, for administrators who force-install it
# (docs/extension.md).
PYTHONPATH=$site "$python" -m agent.browser_extension --out "$stage/usr/share/imza-agent/extension" >/dev/null
install -D -m 0644 "$repo/LICENSE" "$stage/usr/share/doc/imza-agent/copyright"
install -D -m 0644 "$here/README.Debian" "$stage/usr/share/doc/imza-agent/README.Debian"

mkdir -p "$stage/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
next=$("$python" -c "import sys; a,b=sys.argv[1].split('.'); print(f'{a}.{int(b)+1}')" "$pyver")
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
    -e "s/@PYVER@/$pyver/g" -e "s/@PYNEXT@/$next/g" "$here/debian/control.in" > "$stage/DEBIAN/control"
install -m 0755 "$here/debian/postrm" "$stage/DEBIAN/postrm"
(cd "$stage" && find etc -type f -printf '/%p\n' | sort) > "$stage/DEBIAN/conffiles"

mkdir -p "$out"
deb=$out/imza-agent_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
