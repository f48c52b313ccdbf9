#!/usr/bin/env bash
# The main job: two gst-launch-1.0 processes pass live 1080p video through shmring.
# Producer: videotestsrc (live, 30 fps) -> shmringsink. Consumer: shmringsrc (no caps
# typed) -> fakesink (synchronised to the clock). Both run SECONDS (default 3) and
# print what they did.
set -euo pipefail
SECONDS_TO_RUN=${1:-3}
PLUGIN_DIR=${PLUGIN_DIR:-target/release}
export GST_PLUGIN_PATH="$PWD/$PLUGIN_DIR"
sock=$(mktemp -d)/cam
frames=$((SECONDS_TO_RUN * 30))

echo "producer: videotestsrc 1920x1080 I420 @ 30 fps, $frames frames -> shmringsink socket-path=$sock"
gst-launch-1.0 -q videotestsrc is-live=true num-buffers=$frames pattern=ball \
  ! video/x-raw,format=I420,width=1920,height=1080,framerate=30/1 \
  ! shmringsink socket-path="$sock" wait-for-connection=true &
producer=$!
while [ ! -S "$sock" ]; do sleep 0.05; done

echo "consumer: shmringsrc socket-path=$sock ! fakesink sync=true (caps arrive over the socket)"
start=$(date +%s.%N)
consumer_status=0
out=$(gst-launch-1.0 -v shmringsrc socket-path="$sock" ! fakesink silent=false sync=true 2>&1) || consumer_status=$?
end=$(date +%s.%N)
producer_status=0
wait $producer || producer_status=$?

got=$(echo "$out" | grep -c 'last-message = chain' || true)
echo "$out" | grep -m1 -o 'GstFakeSink:fakesink0.GstPad:sink: caps = .*' | sed 's/.*caps = /consumer: caps from the producer: /'
echo "$out" | grep 'last-message = chain' | tail -1 | grep -o '([0-9]* bytes, [^)]*' | cut -d, -f1,3 | sed 's/^(/consumer: last buffer: /'
awk -v n="$got" -v a="$start" -v b="$end" 'BEGIN { printf "consumer: %d frames of 1080p I420 in %.2f s = %.1f fps, read in place from shared memory\n", n, b - a, n / (b - a) }'
echo "consumer: exit $consumer_status, producer: exit $producer_status"
rm -rf "$(dirname "$sock")"
[ "$consumer_status" = 0 ] && [ "$producer_status" = 0 ]
