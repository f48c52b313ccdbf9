"""Prints the mean brightness of each frame of a live producer as it comes.

Usage: brightness.py PRODUCER [FRAMES]

PRODUCER is a shmringsink's producer-name (or a socket path, or a shmring:// URI).
Each frame is a read-only numpy array over the producer's shared slot: nothing is
copied, and the slot goes back to the producer as soon as the frame is garbage.
"""

import sys
import time

import numpy as np

import shmring

# ITU-R BT.601 luma weights of R, G, B.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def brightness(frame: shmring.Frame) -> float:
    """Mean luma of an RGB frame, 0 (black) to 255 (white)."""
    rgb = frame.array  # (height, width, 3) uint8, a view of the slot
    return float(rgb.mean(axis=(0, 1)) @ LUMA)


def main() -> int:
    producer = sys.argv[1]
    frames = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    with shmring.Consumer(producer) as camera:
        for n, frame in enumerate(camera):
            caps = frame.caps
            if caps.format != "RGB":
                print(f"expected RGB frames, got {caps}", file=sys.stderr)
                return 1
            # When the frame was due, on this machine's monotonic clock, and how long ago.
            late = ""
            if frame.base_time is not None and frame.pts is not None:
                lag = time.clock_gettime_ns(time.CLOCK_MONOTONIC) - frame.base_time - frame.pts
                late = f" {lag / 1e6:6.2f} ms after its timestamp"
            print(
                f"frame {frame.seq:4d} pts {frame.pts / 1e9:7.3f} s "
                f"{caps.width}x{caps.height} brightness {brightness(frame):6.2f}{late}",
                flush=True,
            )
            if frames and n + 1 >= frames:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
