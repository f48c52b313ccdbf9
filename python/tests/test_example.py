"""The brightness example (examples/python-brightness), run as `make python-brightness`
runs it: a live camera process and the Python app printing each frame's brightness."""

import re
import subprocess
import sys

from conftest import HERE, gst_env


def test_the_brightness_example_prints_each_frames_brightness_as_it_comes():
    run = HERE.parent.parent / "examples" / "python-brightness" / "run.sh"
    out = subprocess.run(
        [str(run), "12"],
        env=gst_env({"PY": sys.executable}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 12, out.stdout
    line = re.compile(
        r"frame +(\d+) pts +([\d.]+) s 640x480 brightness +([\d.]+) +(-?[\d.]+) ms after its timestamp"
    )
    seen = [line.fullmatch(s) for s in lines]
    assert all(seen), out.stdout
    assert [int(m[1]) for m in seen] == list(range(12))
    # A live camera: timestamps go up by a frame at 30 frames/s.
    pts = [float(m[2]) for m in seen]
    assert all(abs(b - a - 1 / 30) < 0.002 for a, b in zip(pts, pts[1:])), pts
    # The ball pattern on black: some light, far from white.
    assert all(0 < float(m[3]) < 128 for m in seen), out.stdout
