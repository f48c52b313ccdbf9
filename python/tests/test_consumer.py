"""A Python consumer of gst-launch-1.0 producers in other processes: frames as
read-only numpy arrays shaped by the caps, viewing the producer's slots."""

import gc
import socket
import time
from fractions import Fraction

import numpy as np
import pytest

import shmring
from conftest import arena_mappings, wait_for_socket


def serve(procs, tmp_path, source, caps, n=20, sink=""):
    """A gst-launch-1.0 producer of `n` buffers that waits for its first consumer."""
    sock = tmp_path / "producer"
    p = procs.gst_launch(
        f"{source} num-buffers={n} ! {caps} ! shmringsink socket-path={sock} "
        f"wait-for-connection=true {sink}"
    )
    wait_for_socket(sock, p)
    return p, str(sock)


def test_rgba_frames_are_read_only_arrays_over_the_producers_slot(procs, tmp_path):
    p, sock = serve(
        procs,
        tmp_path,
        "videotestsrc pattern=solid-color foreground-color=0xff336699",
        "video/x-raw,format=RGBA,width=320,height=240,framerate=30/1",
    )
    with shmring.Consumer(sock) as c:
        f = c.recv(timeout=30)
        a = f.array
        assert a.shape == (240, 320, 4) and a.dtype == np.uint8
        assert (a == [0x33, 0x66, 0x99, 0xFF]).all()
        assert not a.flags.writeable
        with pytest.raises(ValueError):
            a[0, 0, 0] = 1
        # No copy: the array's data lies in this process's mapping of an arena.
        assert not f.is_copy
        addr = a.__array_interface__["data"][0]
        assert any(lo <= addr < hi for lo, hi in arena_mappings())
        assert bytes(f) == a.tobytes() and len(f) == f.nbytes == 320 * 240 * 4
        assert memoryview(f).readonly
        with pytest.raises(ValueError):
            a.setflags(write=True)
        caps = f.caps
        assert (caps.media_type, caps.format, caps.width, caps.height) == (
            "video/x-raw",
            "RGBA",
            320,
            240,
        )
        assert caps.framerate == Fraction(30, 1) and caps["framerate"] == Fraction(30, 1)
        assert caps.rate is None and "width" in caps and "rate" not in caps
        assert c.caps == caps
        seqs, pts = [f.seq], [f.pts]
        assert f.duration == 33_333_333
        del a, f
        for f in c:
            seqs.append(f.seq)
            pts.append(f.pts)
    assert seqs == list(range(20))
    # videotestsrc's timestamps, as the producer's buffers had them.
    assert pts == [k * 1_000_000_000 // 30 for k in range(20)]
    assert p.wait(timeout=30) == 0


@pytest.mark.parametrize(
    "fmt,w,h,shapes,dtype",
    [
        ("I420", 320, 240, [(240, 320), (120, 160), (120, 160)], np.uint8),
        ("I420", 321, 241, [(241, 321), (121, 161), (121, 161)], np.uint8),
        ("NV12", 320, 240, [(240, 320), (120, 160, 2)], np.uint8),
        ("Y444", 64, 48, [(48, 64)] * 3, np.uint8),
        ("GRAY8", 64, 48, [(48, 64)], np.uint8),
        ("GRAY16_LE", 64, 48, [(48, 64)], np.dtype("<u2")),
        ("RGB", 65, 48, [(48, 65, 3)], np.uint8),
        ("BGRx", 64, 48, [(48, 64, 4)], np.uint8),
        ("I420_10LE", 64, 48, [(48, 64), (24, 32), (24, 32)], np.dtype("<u2")),
        ("AYUV64", 64, 48, [(48, 64, 4)], np.dtype("<u2")),
        ("YUY2", 64, 48, [(48, 128)], np.uint8),
    ],
)
def test_planes_are_shaped_by_the_caps_and_hold_the_pixels(procs, tmp_path, fmt, w, h, shapes, dtype):
    # White, converted by videotestsrc itself into each format.
    p, sock = serve(
        procs,
        tmp_path,
        "videotestsrc pattern=white",
        f"video/x-raw,format={fmt},width={w},height={h}",
        n=3,
    )
    with shmring.Consumer(sock) as c:
        f = c.recv(timeout=30)
        planes = f.planes
        assert [a.shape for a in planes] == shapes
        assert all(a.dtype == dtype and not a.flags.writeable for a in planes)
        if len(planes) > 1:
            with pytest.raises(ValueError, match=f"{fmt} frames have {len(planes)} planes"):
                f.array
        else:
            assert f.array.shape == shapes[0]
        # Every pixel of a plane is the same value, the one GStreamer's own
        # converter gives white in this format.
        reference = convert_white(fmt, w, h)
        for a, r in zip(planes, reference):
            assert (a == r).all(), (fmt, a.min(), a.max(), r)
        rest = list(c)
    assert len(rest) == 2
    assert p.wait(timeout=30) == 0


def convert_white(fmt, w, h):
    """White in `fmt`: each plane's value, as videotestsrc writes it."""
    return {
        "I420": [235, 128, 128],
        "NV12": [235, [128, 128]],
        "Y444": [235, 128, 128],
        "GRAY8": [235],
        "GRAY16_LE": [235 * 257],
        "RGB": [[255, 255, 255]],
        "BGRx": [[255, 255, 255, 255]],
        # 16-bit white and gray, cut to 10 bits.
        "I420_10LE": [235 * 257 >> 6, 128 * 257 >> 6, 128 * 257 >> 6],
        "AYUV64": [[65535, 235 * 257, 128 * 257, 128 * 257]],
        "YUY2": [np.tile([235, 128], w)],
    }[fmt]


def test_audio_is_samples_by_channels_or_channels_by_samples(procs, tmp_path):
    p, sock = serve(
        procs,
        tmp_path,
        "audiotestsrc wave=square volume=0.5 samplesperbuffer=480",
        "audio/x-raw,format=S16LE,rate=48000,channels=2,layout=interleaved",
        n=5,
    )
    with shmring.Consumer(sock) as c:
        f = c.recv(timeout=30)
        a = f.array
        assert a.shape == (480, 2) and a.dtype == np.dtype("<i2")
        assert (a[:, 0] == a[:, 1]).all() and np.abs(a).max() > 10000
        assert (f.caps.rate, f.caps.channels, f.caps.layout) == (48000, 2, "interleaved")
        assert f.pts == 0 and f.duration == 10_000_000 and f.offset == 0
        assert len(list(c)) == 4
    p.wait(timeout=30)

    p, sock = serve(
        procs,
        tmp_path,
        "audiotestsrc wave=square volume=0.5 samplesperbuffer=480",
        "audioconvert ! audio/x-raw,format=F32LE,rate=48000,channels=2,layout=non-interleaved",
        n=5,
    )
    with shmring.Consumer(sock) as c:
        f = c.recv(timeout=30)
        a = f.array
        assert a.shape == (2, 480) and a.dtype == np.dtype("<f4")
        assert (a[0] == a[1]).all() and 0.4 < np.abs(a).max() <= 0.5
        assert len(list(c)) == 4
    p.wait(timeout=30)


def test_encoded_frames_are_their_bytes(procs, tmp_path):
    p, sock = serve(
        procs, tmp_path, "videotestsrc", "video/x-raw,width=64,height=48 ! jpegenc", n=3
    )
    with shmring.Consumer(sock) as c:
        frames = list(c)
    assert len(frames) == 3
    a = frames[0].array
    assert a.ndim == 1 and a.dtype == np.uint8 and frames[0].caps.media_type == "image/jpeg"
    assert bytes(a[:2]) == b"\xff\xd8" and bytes(a[-2:]) == b"\xff\xd9"
    assert p.wait(timeout=30) == 0


def test_frames_with_no_caps_or_caps_that_fix_no_layout_are_their_bytes(procs, tmp_path):
    # Nobody claims a layout: the frames cross as bytes, as in one process.
    for name, caps, media_type in [("none", "identity", None), ("bare", "video/x-raw", "video/x-raw")]:
        d = tmp_path / name
        d.mkdir()
        p, sock = serve(procs, d, "fakesrc sizetype=2 sizemax=1000 filltype=4", caps, n=3)
        with shmring.Consumer(sock) as c:
            frames = list(c)
        assert len(frames) == 3
        a = frames[0].array
        assert a.ndim == 1 and a.dtype == np.uint8 and len(a) == 1000
        assert bytes(a[:4]) == b"\x00\x01\x02\x03"
        if media_type is None:
            assert frames[0].caps is None
        else:
            assert frames[0].caps.media_type == media_type
        assert p.wait(timeout=30) == 0


def test_a_consumer_holding_frames_past_its_share_gets_copies_and_never_stalls_the_producer(
    procs, tmp_path
):
    # blink: black and white frames in turn. Frames held past the share would stall
    # the producer (it waits 1 s for a consumer, then cuts it off); a slot reused
    # under a held array would change its pixels.
    n = 60
    p, sock = serve(
        procs,
        tmp_path,
        "videotestsrc pattern=blink",
        "video/x-raw,format=RGB,width=64,height=48,framerate=30/1",
        n=n,
    )
    held = []
    with shmring.Consumer(sock) as c:
        for f in c:
            a = f.array
            held.append((f, a, int(a[0, 0, 0])))
            assert (a == a[0, 0, 0]).all()
        stats = c.stats
        limit = c.zero_copy_limit
    assert p.wait(timeout=60) == 0, p.stderr.read()
    assert [f.seq for f, _, _ in held] == list(range(n))
    assert sum(f.dropped_before for f, _, _ in held) == 0
    assert [f.is_copy for f, _, _ in held] == [False] * limit + [True] * (n - limit)
    assert stats["copies"] == n - limit and stats["frames"] == n
    assert {v for _, _, v in held} == {0, 255}
    for f, a, v in held:
        assert (a == v).all(), f"frame {f.seq} changed under its array"


def test_a_frames_slot_goes_back_when_the_frame_and_its_arrays_are_garbage(procs, tmp_path):
    p, sock = serve(
        procs, tmp_path, "videotestsrc", "video/x-raw,format=GRAY8,width=64,height=48", n=4
    )
    with shmring.Consumer(sock) as c:
        f = c.recv(timeout=30)
        planes = f.planes
        del f
        gc.collect()
        assert c.stats["held"] == 1, "the arrays keep the frame"
        del planes
        gc.collect()
        assert c.stats["held"] == 0
        assert len(list(c)) == 3
        assert c.stats["copies"] == 0
    p.wait(timeout=30)


def test_copy_true_gives_private_copies(procs, tmp_path):
    p, sock = serve(
        procs, tmp_path, "videotestsrc pattern=white", "video/x-raw,format=GRAY8,width=64,height=48", n=4
    )
    with shmring.Consumer(sock, copy=True) as c:
        frames = list(c)
    assert [f.is_copy for f in frames] == [True] * 4
    for f in frames:
        addr = f.array.__array_interface__["data"][0]
        assert not any(lo <= addr < hi for lo, hi in arena_mappings())
        assert (f.array == 235).all()
    p.wait(timeout=30)


def test_named_producers_and_uris(procs, runtime_dir):
    for target in ["cam", "shmring://cam", f"shmring://{runtime_dir}/shmring/cam"]:
        p = procs.gst_launch(
            "videotestsrc num-buffers=2 ! video/x-raw,format=GRAY8,width=16,height=16 "
            "! shmringsink producer-name=cam wait-for-connection=true"
        )
        wait_for_socket(runtime_dir / "shmring" / "cam", p)
        with shmring.Consumer(target) as c:
            assert len(list(c)) == 2, target
        assert p.wait(timeout=30) == 0


PRODUCER_ON_FD = """
import sys, numpy as np, shmring
out = shmring.Producer(None, "video/x-raw,format=GRAY8,width=8,height=4,framerate=10/1")
out.add_socket(int(sys.argv[1]))
out.wait_for_consumers(1, timeout=30)
for k in range(5):
    out.publish(np.full((4, 8), k, np.uint8), pts=k * 100_000_000, duration=100_000_000)
out.end()
"""


def test_a_consumer_on_an_inherited_socket(procs):
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    p = procs.python(PRODUCER_ON_FD, theirs.fileno(), pass_fds=[theirs.fileno()])
    theirs.close()
    with shmring.Consumer(fd=ours.fileno()) as c:
        frames = list(c)
    ours.close()
    assert [int(f.array[0, 0]) for f in frames] == [0, 1, 2, 3, 4]
    assert [f.pts for f in frames] == [k * 100_000_000 for k in range(5)]
    assert p.wait(timeout=30) == 0, p.stderr.read()


SILENT_PRODUCER = """
import sys, time, shmring
out = shmring.Producer(sys.argv[1], "video/x-raw,format=GRAY8,width=8,height=4")
print("ready", flush=True)
time.sleep(600)
"""


def test_recv_keeps_its_timeout_and_the_arguments_are_checked(procs, tmp_path):
    sock = tmp_path / "silent"
    p = procs.python(SILENT_PRODUCER, sock)
    assert p.stdout.readline().strip() == "ready"
    with shmring.Consumer(str(sock)) as c:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            c.recv(timeout=0.3)
        assert time.monotonic() - start >= 0.3
        # The caps came before any frame.
        assert c.caps.format == "GRAY8"
    with pytest.raises(ValueError, match="not both"):
        shmring.Consumer("x", fd=0)
    with pytest.raises(ValueError, match="not a number of seconds"):
        shmring.Consumer(str(sock), connect_timeout=-1)
    with pytest.raises(shmring.Error, match="no producer"):
        shmring.Consumer(str(tmp_path / "nobody"))
    with pytest.raises(ValueError):
        shmring.Consumer("not a name!")
