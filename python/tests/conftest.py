"""Real processes for the Python package's tests: gst-launch-1.0 pipelines with this
build's plugin, the test peers of this build (gst-peer), and Python producers and
consumers in processes of their own."""

import gc
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# Where this build's libgstshmring.so and test peers are (make python-test sets it).
TARGET = Path(os.environ.get("SHMRING_TARGET_DIR", HERE.parent.parent / "target" / "debug"))


def gst_env(extra=None):
    env = dict(os.environ)
    env["GST_PLUGIN_PATH"] = str(TARGET)
    env.update(extra or {})
    return env


class Procs:
    """Processes a test starts, killed and reaped at its end whatever happened."""

    def __init__(self):
        self.procs = []

    def start(self, args, env=None, **kw):
        p = subprocess.Popen(
            args,
            env=gst_env(env),
            stdout=kw.pop("stdout", subprocess.PIPE),
            stderr=kw.pop("stderr", subprocess.PIPE),
            text=True,
            **kw,
        )
        self.procs.append(p)
        return p

    def gst_launch(self, description, env=None):
        """gst-launch-1.0 with `description` split on spaces (no quoting needed here)."""
        return self.start(["gst-launch-1.0", "-q", *description.split()], env=env)

    def python(self, code, *args, env=None, **kw):
        """This interpreter running `code` (the producers' and consumers' other side)."""
        return self.start([sys.executable, "-c", code, *map(str, args)], env=env, **kw)

    def peer(self, *args, env=None):
        """The gst-peer test binary of this build (`gst-peer lie ACT SOCKET`, ...)."""
        return self.start([str(TARGET / "gst-peer"), *map(str, args)], env=env)

    def kill_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.wait()
            for f in (p.stdin, p.stdout, p.stderr):
                if f is not None:
                    f.close()


@pytest.fixture
def procs():
    p = Procs()
    yield p
    p.kill_all()


@pytest.fixture
def runtime_dir(tmp_path, monkeypatch):
    """A private $XDG_RUNTIME_DIR for named producers, this process's and children's."""
    d = tmp_path / "run"
    d.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(d))
    return d


def wait_for_socket(path, proc=None, timeout=30.0):
    """Waits until a producer listens at `path` (its process still running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"producer exited {proc.returncode}: {proc.stderr.read()}")
        time.sleep(0.02)
    raise AssertionError(f"no producer at {path} after {timeout} s")


def open_fds():
    """This process's open sockets and memfds, what a consumer opens (the harness's
    own pipes and GStreamer's eventfds come and go with other objects)."""
    gc.collect()
    fds = {}
    for f in os.listdir("/proc/self/fd"):
        try:
            what = os.readlink(f"/proc/self/fd/{f}")
        except FileNotFoundError:
            continue
        if what.startswith(("socket:", "/memfd:")):
            fds[int(f)] = what
    return fds


@pytest.fixture(scope="session", autouse=True)
def gstreamer_ready():
    """GStreamer's types set up before any test counts fds (it keeps a few open)."""
    import shmring

    shmring.Caps.parse("video/x-raw,format=RGB,width=1,height=1")


def arena_mappings():
    """This process's mappings of shmring arenas, as (start, end) addresses."""
    out = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        if "memfd:shmring-arena" in line:
            lo, hi = line.split()[0].split("-")
            out.append((int(lo, 16), int(hi, 16)))
    return out
