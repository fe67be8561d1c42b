#!/usr/bin/env bash
# Installs what is missing, records PRE and POST of a stage for a few seconds of live audio into
# ./recordings (or the directory given as first argument) and lists the files written.
set -euo pipefail
cd "$(dirname "$0")/.."
base_dir="${1:-recordings}"
scripts/setup.sh
cargo run --quiet --example record -- --base-dir "$base_dir" --seconds "${SECONDS_TO_RECORD:-12}"
echo
echo "Files under $base_dir:"
find "$base_dir" -name '*.wav' -printf '%10s bytes  %p\n' | sort -k3
