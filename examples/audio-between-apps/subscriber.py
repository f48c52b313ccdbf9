#!/usr/bin/python3
"""Subscribes to an audio stream published with shmringsink and prints its live
levels, one line per `level` message.

Usage: subscriber.py NAME SOCKET_PATH [MESSAGES]

No caps to type: shmringsrc outputs whatever the publisher sends. Exits 0 after
MESSAGES level messages (default 20) or at the publisher's end of stream.
Needs python3-gi and gir1.2-gstreamer-1.0, and the shmring plugin on
GST_PLUGIN_PATH (or installed with `make install`).
"""

import os
import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst  # noqa: E402


def say(line):
    """Prints one whole line with a single write(2): two subscribers may share one
    stdout pipe, and a line that short is never split by the other's output."""
    sys.stdout.flush()
    os.write(sys.stdout.fileno(), (line + "\n").encode())


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    name, path = sys.argv[1], sys.argv[2]
    wanted = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    Gst.init(None)
    if Gst.ElementFactory.find("shmringsrc") is None:
        print(f"{name}: no shmringsrc: put libgstshmring.so on GST_PLUGIN_PATH", file=sys.stderr)
        return 1
    pipeline = Gst.parse_launch(
        f"shmringsrc socket-path={path} ! audioconvert ! "
        "level interval=100000000 post-messages=true ! fakesink sync=true"
    )
    loop = GLib.MainLoop()
    state = {"seen": 0, "status": 0}

    def on_message(_bus, msg):
        if msg.type == Gst.MessageType.ELEMENT and msg.get_structure().get_name() == "level":
            s = msg.get_structure()
            rms = s.get_value("rms")
            peak = s.get_value("peak")
            t = s.get_value("running-time") / Gst.SECOND
            say(
                f"{name}: t={t:.1f}s rms {sum(rms) / len(rms):.1f} dB "
                f"peak {max(peak):.1f} dB ({len(rms)} channels)"
            )
            state["seen"] += 1
            if state["seen"] >= wanted:
                loop.quit()
        elif msg.type == Gst.MessageType.EOS:
            say(f"{name}: end of stream")
            loop.quit()
        elif msg.type == Gst.MessageType.ERROR:
            err, debug = msg.parse_error()
            print(f"{name}: error: {err.message} ({debug})", file=sys.stderr, flush=True)
            state["status"] = 1
            loop.quit()

    bus = pipeline.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    pipeline.set_state(Gst.State.PLAYING)
    caps = None
    try:
        loop.run()
    finally:
        pad = pipeline.get_by_name("shmringsrc0").get_static_pad("src")
        caps = pad.get_current_caps()
        pipeline.set_state(Gst.State.NULL)
    if caps is not None:
        say(f"{name}: caps {caps.to_string()}")
    return state["status"]


if __name__ == "__main__":
    sys.exit(main())
