#!/usr/bin/env bash
# Runs the whole test suite: unit tests of the timeline and the writer, gst-check harness tests
# of the element, gst-launch-1.0 pipelines through the built plugin, uploads to a real
# SeaweedFS server, and the viewer's API and pages (in a headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --tests
export PATH="$HOME/.local/bin:$PATH"
cargo test --workspace
