#!/usr/bin/env bash
# Install the Debian packages napari viewers need under a virtual X server (Xvfb), and
# Chromium, in which the tests open the HTML QA report.
# Pure offscreen Qt has no OpenGL, so widget tests and screenshots run under Xvfb.
set -euo pipefail
PACKAGES="xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxkbcommon-x11-0 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xfixes0 libgl1 libegl1 libfontconfig1 libdbus-1-3 chromium"
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "[system-deps] installing:$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
