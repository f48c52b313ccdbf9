#!/usr/bin/env bash
# Stream audio between apps: app A publishes a live tone with shmringsink; app B,
# a Python program, subscribes with shmringsrc and prints live levels; a second
# subscriber joins two seconds later and hears the same stream.
#
# Usage: run.sh [SECONDS]   (GST_PLUGIN_PATH: where libgstshmring.so is; default
# the release build of this checkout)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
seconds="${1:-5}"
export GST_PLUGIN_PATH="${GST_PLUGIN_PATH:-$here/../../target/release}"
dir="$(mktemp -d)"
sock="$dir/audio"
trap 'kill $pub 2>/dev/null || true; rm -rf "$dir"' EXIT

# App A: 440 Hz at half volume, 48 kHz stereo, in 10 ms buffers.
gst-launch-1.0 -q audiotestsrc is-live=true wave=sine freq=440 volume=0.5 samplesperbuffer=480 \
  ! audio/x-raw,format=S16LE,rate=48000,channels=2 \
  ! shmringsink socket-path="$sock" &
pub=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done

# App B, and a late joiner: ten level messages a second each.
/usr/bin/python3 "$here/subscriber.py" first "$sock" $((seconds * 10)) &
first=$!
sleep 2
/usr/bin/python3 "$here/subscriber.py" late "$sock" $(((seconds - 2) * 10)) &
late=$!
status=0
wait $first || status=1
wait $late || status=1
exit $status
