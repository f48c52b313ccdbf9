"""A Python producer in another process, read by gst-launch-1.0 shmringsrc pipelines
and by Python consumers."""

import pickle

import numpy as np
import pytest

import shmring
from conftest import wait_for_socket

RGB_PRODUCER = """
import sys, numpy as np, shmring
w, h, n = 64, 48, 10
with shmring.Producer(sys.argv[1], f"video/x-raw,format=RGB,width={w},height={h},framerate=30/1") as out:
    out.wait_for_consumers(1, timeout=60)
    for k in range(n):
        frame = (np.arange(h * w * 3, dtype=np.uint32).reshape(h, w, 3) * (k + 1)).astype(np.uint8)
        out.publish(frame, pts=k * 33_333_333, duration=33_333_333)
"""


def rgb_frames():
    w, h = 64, 48
    return b"".join(
        (np.arange(h * w * 3, dtype=np.uint32).reshape(h, w, 3) * (k + 1)).astype(np.uint8).tobytes()
        for k in range(10)
    )


def test_shmringsrc_receives_a_python_producers_frames_byte_for_byte(procs, tmp_path):
    sock, out = tmp_path / "gen", tmp_path / "out.rgb"
    p = procs.python(RGB_PRODUCER, sock)
    wait_for_socket(sock, p)
    c = procs.gst_launch(
        f"shmringsrc socket-path={sock} ! videoconvert ! video/x-raw,format=RGB "
        f"! filesink location={out}"
    )
    assert c.wait(timeout=60) == 0, c.stderr.read()
    assert p.wait(timeout=60) == 0, p.stderr.read()
    assert out.read_bytes() == rgb_frames()


I420_PRODUCER = """
import sys, numpy as np, shmring
w, h = 32, 16
with shmring.Producer(sys.argv[1], f"video/x-raw,format=I420,width={w},height={h},framerate=10/1") as out:
    out.wait_for_consumers(1, timeout=60)
    for k in range(4):
        y = np.full((h, w), 16 + k, np.uint8)
        u = np.full((h // 2, w // 2), 100 + k, np.uint8)
        v = np.full((h // 2, w // 2), 200 + k, np.uint8)
        # The planes one after the other: GStreamer's default I420 layout.
        out.publish(np.concatenate([y.ravel(), u.ravel(), v.ravel()]), pts=k * 100_000_000)
"""


def test_planar_video_from_python_reaches_a_filesink_as_published(procs, tmp_path):
    sock, out = tmp_path / "gen", tmp_path / "out.yuv"
    p = procs.python(I420_PRODUCER, sock)
    wait_for_socket(sock, p)
    c = procs.gst_launch(f"shmringsrc socket-path={sock} ! videoconvert ! filesink location={out}")
    assert c.wait(timeout=60) == 0, c.stderr.read()
    assert p.wait(timeout=60) == 0, p.stderr.read()
    frame = 32 * 16 * 3 // 2
    data = out.read_bytes()
    assert len(data) == 4 * frame
    for k in range(4):
        f = data[k * frame : (k + 1) * frame]
        assert f[: 32 * 16] == bytes([16 + k]) * (32 * 16)
        assert f[32 * 16 : 32 * 16 + 128] == bytes([100 + k]) * 128
        assert f[32 * 16 + 128 :] == bytes([200 + k]) * 128


AUDIO_PRODUCER = """
import sys, numpy as np, shmring
with shmring.Producer(sys.argv[1], "audio/x-raw,format=F32LE,rate=48000,channels=2,layout=interleaved") as out:
    out.wait_for_consumers(1, timeout=60)
    t = np.arange(480, dtype=np.float32)
    for k in range(5):
        left = np.sin(t / 10 + k).astype(np.float32)
        # Columns of a (2, 480) array: not contiguous, copied contiguous once.
        out.publish(np.stack([left, -left])[:, :].T, pts=k * 10_000_000, duration=10_000_000)
"""


def test_a_python_consumer_reads_a_python_producers_audio(procs, tmp_path):
    sock = tmp_path / "gen"
    p = procs.python(AUDIO_PRODUCER, sock)
    wait_for_socket(sock, p)
    with shmring.Consumer(str(sock)) as c:
        frames = list(c)
    assert p.wait(timeout=60) == 0, p.stderr.read()
    assert len(frames) == 5
    t = np.arange(480, dtype=np.float32)
    for k, f in enumerate(frames):
        a = f.array
        assert a.shape == (480, 2) and a.dtype == np.dtype("<f4")
        assert np.array_equal(a[:, 0], np.sin(t / 10 + k).astype(np.float32))
        assert np.array_equal(a[:, 1], -a[:, 0])
        assert (f.pts, f.duration) == (k * 10_000_000, 10_000_000)


def test_a_named_python_producer_is_found_by_shmringsrc(procs, runtime_dir, tmp_path):
    out = tmp_path / "out.gray"
    p = procs.python(
        """
import numpy as np, shmring
with shmring.Producer("gen", "video/x-raw,format=GRAY8,width=16,height=8,framerate=10/1") as out:
    assert out.path.endswith("/shmring/gen"), out.path
    out.wait_for_consumers(1, timeout=60)
    for k in range(3):
        out.publish(np.full((8, 16), 40 + k, np.uint8), pts=k * 100_000_000)
"""
    )
    wait_for_socket(runtime_dir / "shmring" / "gen", p)
    c = procs.gst_launch(f"shmringsrc producer-name=gen ! filesink location={out}")
    assert c.wait(timeout=60) == 0, c.stderr.read()
    assert p.wait(timeout=60) == 0, p.stderr.read()
    assert out.read_bytes() == b"".join(bytes([40 + k]) * 128 for k in range(3))


def test_what_a_consumer_would_refuse_is_refused_at_the_producer(tmp_path):
    with pytest.raises(ValueError, match="not one fixed structure"):
        shmring.Producer(str(tmp_path / "a"), "video/x-raw,format=RGB,width=[1,10],height=4")
    with pytest.raises(ValueError, match="other than system memory"):
        shmring.Producer(str(tmp_path / "b"), "video/x-raw(memory:DMABuf),format=RGB,width=4,height=4")
    with pytest.raises(ValueError, match="unparsable caps"):
        shmring.Producer(str(tmp_path / "c"), "not caps at all,,")
    with pytest.raises(ValueError, match='"block" or "drop"'):
        shmring.Producer(str(tmp_path / "d"), "video/x-raw,format=RGB,width=4,height=4", on_slow_consumer="wait")
    with shmring.Producer(str(tmp_path / "e"), "video/x-raw,format=RGB,width=5,height=4") as out:
        # Rows of 15 bytes where GStreamer's are 16.
        with pytest.raises(ValueError, match=r"a 5x4 RGB frame is 64 bytes .*\(strides \[16\]\), not 60"):
            out.publish(np.zeros((4, 5, 3), np.uint8))
        with pytest.raises(ValueError, match="negative"):
            out.publish(np.zeros((4, 16), np.uint8), pts=-1)
        with pytest.raises(ValueError, match="flags 0x1"):
            out.publish(np.zeros((4, 16), np.uint8), flags=1)
        assert out.publish(np.zeros((4, 16), np.uint8)) == 0, "no consumer"
        out.set_caps("audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved")
        assert out.caps.rate == 8000
        with pytest.raises(ValueError, match="not a whole number of 2-byte frames"):
            out.publish(b"abc")
    with pytest.raises(shmring.Error, match="ended"):
        out.publish(b"ab")
    caps = shmring.Caps.parse("audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved")
    assert caps.channels == 1 and caps.fields["format"] == "S16LE"
    assert pickle.loads(pickle.dumps(caps)) == caps
    with pytest.raises(ValueError, match="NUL byte"):
        shmring.Caps.parse("video/x-raw\0,width=1")


def test_shmring_lists_a_python_producer_and_its_consumer_as_the_producer_counts_them(
    procs, runtime_dir
):
    import json
    import os
    import subprocess

    from conftest import TARGET

    p = procs.python(
        """
import sys, numpy as np, shmring
with shmring.Producer("gen", "video/x-raw,format=GRAY8,width=16,height=8,framerate=10/1") as out:
    out.wait_for_consumers(1, timeout=60)
    for k in range(5):
        out.publish(np.full((8, 16), k, np.uint8), pts=k * 100_000_000)
    sys.stdin.readline()  # stays up until told, so that it can be looked at
""",
        stdin=subprocess.PIPE,
    )
    wait_for_socket(runtime_dir / "shmring" / "gen", p)
    with shmring.Consumer("gen") as c:
        # Each frame let go once read: a consumer holding more than its share of
        # slots would have the producer drop for it.
        frames = iter(c)
        sizes = [len(next(frames).array.tobytes()) for _ in range(5)]
        out = subprocess.run(
            [str(TARGET / "shmring"), "list", "--json"], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        (row,) = json.loads(out.stdout)["producers"]
        assert (row["name"], row["state"]) == ("gen", "serving"), row
        assert row["caps"].startswith("video/x-raw"), row
        assert row["stats"]["frames"] == 5 and row["stats"]["policy"] == "block", row
        (me,) = row["consumers"]
        assert (me["pid"], me["uid"], me["frames"]) == (os.getpid(), os.getuid(), 5), me
        assert me["bytes"] == sum(sizes) == 5 * 128, me
    p.stdin.write("\n")
    p.stdin.close()
    assert p.wait(timeout=60) == 0, p.stderr.read()
