#!/usr/bin/env bash
# Per-frame brightness from a live camera process: the "camera" (gst-launch-1.0
# videotestsrc, live, 30 frames/s, a moving ball) serves its frames as the named
# producer "camera"; a Python app (brightness.py, no GStreamer pipeline of its own)
# reads each frame as a numpy array over the shared slot and prints its mean
# brightness as it comes.
#
# Usage: run.sh [FRAMES]   (PY: a Python with the shmring package, `make python`;
# GST_PLUGIN_PATH: where libgstshmring.so is, default this checkout's release build)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
frames="${1:-90}"
py="${PY:-$here/../../target/python/bin/python}"
export GST_PLUGIN_PATH="${GST_PLUGIN_PATH:-$here/../../target/release}"
# A private directory of named producers for this run (the camera and the app look
# up "camera" in it, as they would in the user's $XDG_RUNTIME_DIR/shmring).
export XDG_RUNTIME_DIR="$(mktemp -d)"
trap 'kill $cam 2>/dev/null || true; rm -rf "$XDG_RUNTIME_DIR"' EXIT

gst-launch-1.0 -q videotestsrc is-live=true pattern=ball motion=sweep \
  ! video/x-raw,format=RGB,width=640,height=480,framerate=30/1 \
  ! shmringsink producer-name=camera &
cam=$!
for _ in $(seq 200); do [ -S "$XDG_RUNTIME_DIR/shmring/camera" ] && break; sleep 0.05; done

"$py" "$here/brightness.py" camera "$frames"
