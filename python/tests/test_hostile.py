"""Hostile producers, each a real process of this build (gst-peer lie, frame-peer
evil-producer), against a Python consumer in this process: every lie raises
shmring.PeerError naming it, within the deadline, on every later call too; the
consumer's process goes on, and nothing it opened stays open."""

import os
import signal
import time

import pytest

import shmring
from conftest import TARGET, arena_mappings, open_fds, wait_for_socket

# gst-peer lie ACT: a producer speaking the plugin's encoding that lies about one
# thing in every frame; the words the error must have.
LIES = [
    ("stride-huge", "plane 0 (240 rows of stride 1073741824"),
    ("stride-negative", "plane 0 stride -67108864 is less than its 320-byte rows"),
    ("stride-double", "plane 0 (240 rows of stride 640 from offset 0) ends past the 115200-byte buffer"),
    ("plane-past-end", "plane 0 (240 rows of stride 320 from offset 114880) ends past"),
    ("short-frame", "video buffer of 1000 bytes is smaller than the 115200 bytes"),
    ("planes-count", "video layout has 2 planes, caps I420 say 3"),
    ("stride-partial-pixel", "plane 0 stride 1279 is less than its 1280-byte rows (320x240 RGBx)"),
    ("lock-flags", "buffer flags 0x3 include 0x3, which no buffer carries across"),
    ("dmabuf-caps", "have features (memory:DMABuf) other than system memory"),
    ("audio-partial", "audio buffer of 401 bytes is not a whole number of 4-byte frames"),
    ("glmemory-caps", "have features (memory:GLMemory) other than system memory"),
    ("segment-rate-zero", "segment rate 0 is not valid"),
    ("segment-stop-before-start", "segment: stop 1 is before start 10000000000"),
    ("toc-too-deep", "TOC: 9 levels of entries, more than 8"),
]


def first_error(c, deadline_s=30):
    """Receives until an error; the frames before it are the honest ones."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            f = c.recv(timeout=max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            break
        if f is None:
            pytest.fail("the stream ended without an error")
    else:
        pytest.fail(f"no error within {deadline_s} s")
    pytest.fail(f"no error within {deadline_s} s")


@pytest.mark.parametrize("act,lie", LIES, ids=[a for a, _ in LIES])
def test_a_lying_producer_raises_peer_error_naming_the_lie(procs, tmp_path, act, lie):
    sock = tmp_path / act
    liar = procs.peer("lie", act, sock)
    assert liar.stdout.readline().strip() == "ready"
    fds = open_fds()
    c = shmring.Consumer(str(sock))
    with pytest.raises(shmring.PeerError) as err:
        first_error(c)
    assert lie in str(err.value)
    # Broken for good, with the same words.
    with pytest.raises(shmring.PeerError) as again:
        c.recv(timeout=1)
    assert str(again.value) == str(err.value)
    # The liar is cut off (its slots back to it), and we hold nothing of it.
    del c, err, again
    assert open_fds() == fds
    assert arena_mappings() == []
    assert liar.poll() is None, "the liar is still there; we are the ones who left"


def test_an_honest_stream_whose_frames_end_where_the_arena_ends_is_read_whole(procs, tmp_path):
    # UYVP one pixel wide: rows GStreamer reads past; numpy gets the rows of bytes.
    sock = tmp_path / "uyvp"
    liar = procs.peer("lie", "uyvp-narrow", sock)
    assert liar.stdout.readline().strip() == "ready"
    with shmring.Consumer(str(sock)) as c:
        for _ in range(20):
            f = c.recv(timeout=30)
            # The frame's bytes as GStreamer lays them out: 4096 (1024 rows of 4)
            # up to 1.26, 8192 from 1.28 on.
            assert f.array.shape == (len(f),) and len(f) in (4096, 8192)
            assert int(f.array.sum()) >= 0


@pytest.mark.parametrize("act", ["meta-crop-outside", "meta-unknown-kind", "meta-piece-overflow", "latency-huge"])
def test_lies_in_what_only_gstreamer_reads_leave_a_python_consumer_streaming(procs, tmp_path, act):
    # Metas and the producer's latency go to GStreamer, which a Python consumer does
    # not run: it reads the frames (checked as ever) and leaves the rest.
    sock = tmp_path / act
    liar = procs.peer("lie", act, sock)
    assert liar.stdout.readline().strip() == "ready"
    with shmring.Consumer(str(sock)) as c:
        frames = [c.recv(timeout=30) for _ in range(10)]
    assert [f.seq for f in frames] == list(range(10))
    assert all(len(f.planes) == 3 for f in frames)


# frame-peer evil-producer ACT: lies of the frame channel itself.
EVIL = [
    ("unsealed-arena", "memfd lacks F_SEAL_SHRINK"),
    ("writable-arena", "memfd lacks F_SEAL_FUTURE_WRITE"),
    ("undersized-arena", "memfd is 4096 bytes, arena needs 16384"),
    ("arena-over-limit", "arena 0 of 3072 slots of 1048576 bytes is over the 2147483648 bytes this consumer maps"),
    ("desc-out-of-range", "slot 9 offset 0 length 100 is outside the arena"),
    ("desc-overflow", "offset 4000 length 200 is outside"),
    ("desc-unknown-arena", "frame 0 names arena 7, which was never announced"),
    ("desc-wrong-seq", "frame ring holds frame 5, expected frame 0"),
    ("desc-msgs-lie", "frame 0 follows 3 socket messages, 1 arrived"),
    ("ring-head", "ring head 1000000 is"),
    ("oversized-msg", "MSG_TRUNC"),
    ("malformed-msg", "protocol violation"),
    ("wrong-fds", "Arena carries 1 fds, 0 arrived"),
    ("many-fds", "protocol violation"),
    ("side-flood", "side messages queued"),
    ("bad-welcome-fds", "Welcome carries 4 fds, 2 arrived"),
]

@pytest.mark.parametrize("act,word", EVIL, ids=[a for a, _ in EVIL])
def test_a_producer_breaking_the_frame_channel_raises_peer_error(procs, tmp_path, act, word):
    sock = tmp_path / act
    evil = procs.start([str(TARGET / "frame-peer"), "evil-producer", str(sock), act])
    assert evil.stdout.readline().strip() == "ready"
    fds = open_fds()
    with pytest.raises(shmring.PeerError) as err:
        c = shmring.Consumer(str(sock))
        first_error(c)
    assert word in str(err.value), str(err.value)
    del err
    assert open_fds() == fds
    assert arena_mappings() == []


def test_a_killed_producer_ends_the_stream_with_an_error_and_the_consumer_goes_on(procs, tmp_path):
    sock = tmp_path / "cam"
    p = procs.gst_launch(
        "videotestsrc is-live=true ! video/x-raw,format=GRAY8,width=64,height=48,framerate=30/1 "
        f"! shmringsink socket-path={sock}"
    )
    wait_for_socket(sock, p)
    c = shmring.Consumer(str(sock))
    held = [c.recv(timeout=30) for _ in range(3)]
    p.send_signal(signal.SIGKILL)
    p.wait()
    with pytest.raises(shmring.Error, match="gone without ending the stream"):
        first_error(c)
    # What we held stays readable: our mapping, whatever the producer did.
    assert all(f.array.shape == (48, 64) for f in held)
    # And this process takes the next producer's stream.
    sock2 = tmp_path / "cam2"
    p2 = procs.gst_launch(
        "videotestsrc num-buffers=5 ! video/x-raw,format=GRAY8,width=64,height=48 "
        f"! shmringsink socket-path={sock2} wait-for-connection=true"
    )
    wait_for_socket(sock2, p2)
    with shmring.Consumer(str(sock2)) as c2:
        assert len(list(c2)) == 5


def test_a_socket_that_is_no_producer(tmp_path):
    import socket

    path = tmp_path / "mute"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.bind(str(path))
    s.listen()
    start = time.monotonic()
    # Accepted by the kernel, never answered: the welcome's deadline ends the wait.
    with pytest.raises((TimeoutError, shmring.Error)):
        shmring.Consumer(str(path), connect_timeout=0.5)
    assert time.monotonic() - start < 30
    s.close()
    plain = tmp_path / "file"
    plain.write_text("x")
    with pytest.raises(shmring.Error):
        shmring.Consumer(str(plain))
    assert os.path.exists(plain)
