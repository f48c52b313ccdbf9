"""shmring: media frames between processes, zero-copy, safe against a hostile peer.

Receive the frames of a GStreamer pipeline in another process as read-only numpy
arrays that view its shared memory::

    # gst-launch-1.0 videotestsrc is-live=true ! video/x-raw,format=RGB ! shmringsink producer-name=cam
    import shmring

    with shmring.Consumer("cam") as cam:
        for frame in cam:
            rgb = frame.array            # (height, width, 3) uint8, no copy
            print(frame.pts, rgb.mean())

and publish numpy arrays to a ``shmringsrc`` (or a ``shmring.Consumer``)::

    with shmring.Producer("gen", "video/x-raw,format=GRAY8,width=64,height=48,framerate=30/1") as out:
        out.publish(numpy.zeros((48, 64), numpy.uint8), pts=0)

Everything a producer says (caps, sizes, plane offsets and strides, flags) is
checked as ``shmringsrc`` checks it before Python sees it: a lie raises
``PeerError`` naming it. See ``help(shmring.Consumer)``, ``help(shmring.Frame)``,
``help(shmring.Producer)`` and ``help(shmring.Caps)``.
"""

from ._shmring import READ_PAD, Caps, Consumer, Error, Frame, PeerError, Producer

__all__ = ["Caps", "Consumer", "Error", "Frame", "PeerError", "Producer", "READ_PAD"]
