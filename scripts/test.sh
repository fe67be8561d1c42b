#!/usr/bin/env bash
# Runs the whole test suite: unit tests of the timeline and the writer, gst-check harness tests
# of the element, and gst-launch-1.0 pipelines through the built plugin.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test
