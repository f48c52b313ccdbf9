//! `shmring.Consumer` and `shmring.Frame`: frames of a producer, checked as
//! `shmringsrc` checks them, read by Python through the buffer protocol.

use std::ffi::c_int;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstshmring::codec::trust::Format;
use gstshmring::codec::{self, BufferMeta, Side};
use pyo3::exceptions::{PyTimeoutError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList};
use shmring::{ConsumerConfig, Event, RecvError};

use crate::caps::Caps;
use crate::layout::{View, views};
use crate::{Error, PeerError};

/// How long a blocking call waits at a time before it looks for a signal (Ctrl-C).
const SIGNAL_SLICE: Duration = Duration::from_millis(100);

/// What went wrong, kept to be raised again by every later call.
#[derive(Clone, Debug)]
enum Fault {
    /// The producer lied or broke the protocol.
    Peer(String),
    /// Anything else (the producer died, a system call failed).
    Other(String),
}

impl Fault {
    fn to_err(&self) -> PyErr {
        match self {
            Fault::Peer(m) => PeerError::new_err(m.clone()),
            Fault::Other(m) => Error::new_err(m.clone()),
        }
    }
}

struct Inner {
    consumer: Option<shmring::Consumer>,
    /// The current caps, checked, and what they let a buffer be.
    caps: Option<(gst::Caps, Format)>,
    ended: bool,
    fault: Option<Fault>,
    frames: u64,
    copies: u64,
    dropped: u64,
}

enum Step {
    Frame(Box<Frame>),
    End,
    /// The slice passed: look for signals, then wait again.
    Again,
    Timeout,
}

/// Receives the frames of one producer (a ``shmringsink``, or a
/// ``shmring.Producer`` in another process).
///
/// ``target`` is a producer's name (``shmringsink producer-name=cam`` serves
/// ``$XDG_RUNTIME_DIR/shmring/cam``), a socket path, or a ``shmring://`` URI; or pass
/// ``fd``, a connected socket handed over by the producer's side (the ``fd`` stays
/// the caller's). Connecting waits up to ``connect_timeout`` seconds for the
/// producer's welcome.
///
/// Frames are read in place: a frame's arrays view the producer's shared slot, and
/// the slot goes back to the producer when the frame and every array of it are gone.
/// Holding more frames than the producer's share for this consumer (``max_held``)
/// would make it wait, so from ``zero_copy_limit`` frames held on (by default
/// ``max_held - 1``) frames are copied and their slots given back at once.
/// ``copy=True`` copies every frame.
///
/// Everything the producer says is checked before Python sees it, as
/// ``shmringsrc`` checks it; a lie raises ``shmring.PeerError`` naming it, on this
/// call and every later one.
#[pyclass(module = "shmring")]
pub struct Consumer {
    inner: Mutex<Inner>,
    waker: shmring::Waker,
    outstanding: Arc<AtomicUsize>,
    limit: usize,
    max_held: u32,
    target: String,
}

fn connect_error(e: shmring::ConnectError) -> PyErr {
    match e {
        shmring::ConnectError::Timeout => {
            PyTimeoutError::new_err("the producer did not welcome this consumer in time")
        }
        shmring::ConnectError::Peer(f) => PeerError::new_err(f.to_string()),
        e => Error::new_err(e.to_string()),
    }
}

/// The socket path a consumer of `target` connects to.
fn socket_of(target: &str) -> Result<String, String> {
    use gstshmring::names::{Target, connect_path, parse_uri};
    if target.contains("://") {
        return match parse_uri(target).map_err(|e| e.to_string())? {
            Target::Path(p) => Ok(p),
            Target::Name(n) => connect_path(&n).map_err(|e| e.to_string()),
        };
    }
    if target.contains('/') {
        return Ok(target.to_string());
    }
    connect_path(target).map_err(|e| e.to_string())
}

#[pymethods]
impl Consumer {
    #[new]
    #[pyo3(signature = (target = None, *, fd = None, copy = false, connect_timeout = 10.0, zero_copy_limit = None))]
    fn new(
        py: Python<'_>,
        target: Option<std::path::PathBuf>,
        fd: Option<i32>,
        copy: bool,
        connect_timeout: f64,
        zero_copy_limit: Option<usize>,
    ) -> PyResult<Consumer> {
        crate::gst_ready()?;
        let timeout = crate::seconds(connect_timeout, "connect_timeout")?;
        let cfg = ConsumerConfig {
            copy,
            handshake_timeout: timeout,
            ..Default::default()
        };
        let (consumer, what) = match (target, fd) {
            (Some(_), Some(_)) => {
                return Err(PyValueError::new_err("give a target or an fd, not both"));
            }
            (None, None) => return Err(PyValueError::new_err("give a target or an fd")),
            (None, Some(fd)) => {
                let own = gstshmring::dup_app_fd(fd)
                    .map_err(|e| PyValueError::new_err(format!("fd {fd}: {e}")))?;
                let c = py
                    .detach(|| shmring::Consumer::from_fd(own, cfg))
                    .map_err(connect_error)?;
                (c, format!("fd {fd}"))
            }
            (Some(t), None) => {
                let t = t.to_string_lossy().into_owned();
                let path = socket_of(&t).map_err(PyValueError::new_err)?;
                let c = py
                    .detach(|| shmring::Consumer::connect(&path, cfg))
                    .map_err(connect_error)?;
                (c, path)
            }
        };
        let max_held = consumer.max_held();
        Ok(Consumer {
            waker: consumer.waker(),
            limit: zero_copy_limit.unwrap_or(max_held.saturating_sub(1).max(1) as usize),
            max_held,
            outstanding: Arc::new(AtomicUsize::new(0)),
            target: what,
            inner: Mutex::new(Inner {
                consumer: Some(consumer),
                caps: None,
                ended: false,
                fault: None,
                frames: 0,
                copies: 0,
                dropped: 0,
            }),
        })
    }

    /// The next frame, or ``None`` at the end of the stream (the producer stopped
    /// cleanly). Waits up to ``timeout`` seconds (``None``: as long as it takes),
    /// then raises ``TimeoutError``. Ctrl-C interrupts the wait.
    #[pyo3(signature = (timeout = None))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Frame>> {
        let deadline = match timeout {
            Some(t) => Some(Instant::now() + crate::seconds(t, "timeout")?),
            None => None,
        };
        loop {
            match py.detach(|| self.step(deadline))? {
                Step::Frame(f) => return Ok(Some(*f)),
                Step::End => return Ok(None),
                Step::Again => py.check_signals()?,
                Step::Timeout => {
                    return Err(PyTimeoutError::new_err("no frame came in time"));
                }
            }
        }
    }

    /// The caps of the stream (``None`` before the producer sent any).
    #[getter]
    fn caps(&self) -> Option<Caps> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.caps.as_ref().map(|(c, _)| Caps { caps: c.clone() })
    }

    /// Most frames this consumer may hold at once before the producer waits for it.
    #[getter]
    fn max_held(&self) -> u32 {
        self.max_held
    }

    /// Frames held from here on are copies (see the class's help).
    #[getter]
    fn zero_copy_limit(&self) -> usize {
        self.limit
    }

    /// Counters: ``frames`` received, ``copies`` made because too many frames were
    /// held (or ``copy=True``), ``dropped`` frames the producer dropped for this
    /// consumer, ``held`` frames in place now alive.
    #[getter]
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (frames, copies, dropped) = {
            let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            (g.frames, g.copies, g.dropped)
        };
        let d = PyDict::new(py);
        d.set_item("frames", frames)?;
        d.set_item("copies", copies)?;
        d.set_item("dropped", dropped)?;
        d.set_item("held", self.outstanding.load(Ordering::Acquire))?;
        Ok(d)
    }

    /// Disconnects (a goodbye to the producer). Frames still held stay readable.
    fn close(&self, py: Python<'_>) {
        self.waker.wake();
        py.detach(|| {
            let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            g.consumer = None;
        });
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Frame>> {
        self.recv(py, None)
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) {
        self.close(py);
    }

    fn __repr__(&self) -> String {
        format!("shmring.Consumer({:?})", self.target)
    }
}

impl Consumer {
    /// Waits for the next frame up to `deadline` (and one signal slice), without
    /// the GIL.
    fn step(&self, deadline: Option<Instant>) -> PyResult<Step> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = &g.fault {
            return Err(f.to_err());
        }
        if g.ended {
            return Ok(Step::End);
        }
        loop {
            let now = Instant::now();
            let slice_end = now + SIGNAL_SLICE;
            let until = deadline.map_or(slice_end, |d| d.min(slice_end));
            let Some(c) = g.consumer.as_mut() else {
                return Err(Error::new_err("the consumer is closed"));
            };
            let ev = match c.recv_deadline(Some(until)) {
                Ok(ev) => ev,
                Err(RecvError::Timeout) if deadline.is_some_and(|d| Instant::now() >= d) => {
                    return Ok(Step::Timeout);
                }
                Err(RecvError::Timeout) => return Ok(Step::Again),
                // `close` from another thread.
                Err(RecvError::Interrupted) => return Ok(Step::Again),
                Err(e) => return Err(self.fail(&mut g, fault_of(e))),
            };
            match ev {
                Event::End { .. } => {
                    g.ended = true;
                    return Ok(Step::End);
                }
                Event::Side { payload, .. } => match Side::decode(&payload) {
                    Err(e) => {
                        let f = Fault::Peer(format!("producer sent a bad side message: {e}"));
                        return Err(self.fail(&mut g, f));
                    }
                    Ok(Side::Caps(caps)) => match gstshmring::codec::trust::accept_caps(&caps) {
                        Ok(format) => g.caps = Some((caps, format)),
                        Err(e) => return Err(self.fail(&mut g, Fault::Peer(e.to_string()))),
                    },
                    Ok(Side::Eos) => {
                        g.ended = true;
                        return Ok(Step::End);
                    }
                    // Events, tags, segments and metas are GStreamer's business.
                    Ok(_) => {}
                },
                Event::Frame(f) => match self.received(&mut g, f) {
                    Ok(f) => return Ok(Step::Frame(Box::new(f))),
                    Err(e) => return Err(self.fail(&mut g, Fault::Peer(e))),
                },
            }
        }
    }

    fn fail(&self, g: &mut Inner, f: Fault) -> PyErr {
        let err = f.to_err();
        g.fault = Some(f);
        // Nothing more from a producer that lied: its slots go back with the goodbye.
        g.consumer = None;
        err
    }

    /// Checks frame `f` against the caps (as `shmringsrc` does) and copies it when
    /// enough frames are held already.
    fn received(&self, g: &mut Inner, f: shmring::Frame) -> Result<Frame, String> {
        let m = BufferMeta::decode(f.meta()).map_err(|e| e.to_string())?;
        // No caps yet (the producer sent none): opaque bytes, as `shmringsrc`
        // carries them; the frame then has no caps.
        let (caps, format) = match g.caps.as_ref() {
            Some((c, f)) => (Some(c.clone()), f.clone()),
            None => (None, Format::Other),
        };
        let len = f.len();
        let checked = format.check(len, &m).map_err(|e| e.to_string())?;
        let views = views(&format, &checked, len);
        g.frames += 1;
        g.dropped += u64::from(f.dropped_before());
        let (seq, dropped) = (f.seq(), f.dropped_before());
        let held = self.outstanding.load(Ordering::Acquire);
        let body = if f.is_copy() || held >= self.limit {
            g.copies += 1;
            // Followed by zeros, as a frame in place is followed by its arena's pad.
            let mut v = vec![0u8; len + shmring::frame::READ_PAD];
            f.copy_to(&mut v[..len]);
            Body::Copied(v.into_boxed_slice())
        } else {
            Body::Shared {
                frame: f,
                _held: Held::new(&self.outstanding),
            }
        };
        Ok(Frame {
            body,
            len,
            meta: m,
            views,
            caps,
            seq,
            dropped,
        })
    }
}

fn fault_of(e: RecvError) -> Fault {
    match e {
        RecvError::Peer(f) => Fault::Peer(f.to_string()),
        RecvError::PeerGone => {
            Fault::Other("the producer is gone without ending the stream".into())
        }
        e => Fault::Other(e.to_string()),
    }
}

/// One frame in place counted as held while it lives.
struct Held(Arc<AtomicUsize>);

impl Held {
    fn new(n: &Arc<AtomicUsize>) -> Held {
        n.fetch_add(1, Ordering::AcqRel);
        Held(n.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

enum Body {
    Shared {
        frame: shmring::Frame,
        // Counts the frame as held until it drops.
        _held: Held,
    },
    Copied(Box<[u8]>),
}

/// One frame: its bytes (through the buffer protocol: ``memoryview(frame)``,
/// ``bytes(frame)``), its arrays, timestamps and caps.
///
/// ``array`` is the frame as one read-only numpy array shaped by the caps: rows ×
/// pixels × channels for packed video (``RGBA``: ``(height, width, 4)``), rows ×
/// pixels for one-channel planes (``GRAY8``), samples × channels for interleaved
/// audio, channels × samples for non-interleaved audio, the bytes for anything else.
/// Planar video (``I420``, ``NV12``) has one array per plane in ``planes``.
///
/// The arrays view the producer's slot: nothing is copied, and the slot goes back to
/// the producer when the frame and all its arrays are garbage. A hostile producer
/// could still change the bytes while they are read (never what is mapped, nor
/// beyond it); ``numpy.array(frame.array)`` makes a private copy.
#[pyclass(module = "shmring", frozen)]
pub struct Frame {
    body: Body,
    len: usize,
    meta: BufferMeta,
    views: Vec<View>,
    caps: Option<gst::Caps>,
    seq: u64,
    dropped: u32,
}

fn time(v: u64) -> Option<u64> {
    (v != codec::NONE).then_some(v)
}

impl Frame {
    fn ptr(&self) -> *const u8 {
        match &self.body {
            Body::Shared { frame, .. } => frame.as_ptr(),
            Body::Copied(v) => v.as_ptr(),
        }
    }

    fn view<'py>(slf: &Bound<'py, Self>, v: &View) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        // numpy.ndarray, looked up once.
        static NDARRAY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let ndarray = NDARRAY.get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("numpy")?.getattr("ndarray")?.unbind())
        })?;
        let kw = PyDict::new(py);
        kw.set_item("dtype", v.dtype)?;
        kw.set_item("buffer", slf)?;
        kw.set_item("offset", v.offset)?;
        kw.set_item("strides", v.strides.clone())?;
        // numpy checks the view against the buffer's length, and makes it read-only
        // as the buffer is.
        ndarray.bind(py).call((v.shape.clone(),), Some(&kw))
    }
}

#[pymethods]
impl Frame {
    /// The frame as one array (see the class's help); ``ValueError`` for planar
    /// video, whose planes are in ``planes``.
    #[getter]
    fn array<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let me = slf.get();
        match me.views.as_slice() {
            [v] => Frame::view(slf, v),
            views => Err(PyValueError::new_err(format!(
                "{} frames have {} planes: use frame.planes",
                me.caps
                    .as_ref()
                    .and_then(|c| c.structure(0))
                    .and_then(|s| s.get::<&str>("format").ok())
                    .unwrap_or("these"),
                views.len()
            ))),
        }
    }

    /// One read-only array per plane (Y, U, V for ``I420``; Y, UV for ``NV12``; the
    /// one array of other formats). Each call gives new views of the same bytes.
    #[getter]
    fn planes<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyList>> {
        let arrays = slf
            .get()
            .views
            .iter()
            .map(|v| Frame::view(slf, v))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(slf.py(), arrays)
    }

    /// The stream's caps when this frame came (``None`` when the producer sent
    /// none: the frame is then bytes).
    #[getter]
    fn caps(&self) -> Option<Caps> {
        self.caps.clone().map(|caps| Caps { caps })
    }

    /// Presentation timestamp in nanoseconds of the producer's segment (``None``:
    /// unset).
    #[getter]
    fn pts(&self) -> Option<u64> {
        time(self.meta.pts)
    }

    /// Decoding timestamp in nanoseconds (``None``: unset).
    #[getter]
    fn dts(&self) -> Option<u64> {
        time(self.meta.dts)
    }

    /// Duration in nanoseconds (``None``: unset).
    #[getter]
    fn duration(&self) -> Option<u64> {
        time(self.meta.duration)
    }

    /// The producer's base time: the ``CLOCK_MONOTONIC`` time in nanoseconds of its
    /// pipeline's running time 0 (``None`` without a clock). For a live producer in
    /// the TIME format, ``pts + base_time`` (less the segment's start) is when the
    /// frame was due, on ``time.clock_gettime_ns(time.CLOCK_MONOTONIC)``.
    #[getter]
    fn base_time(&self) -> Option<u64> {
        time(self.meta.base_time)
    }

    /// ``GST_BUFFER_OFFSET`` (frame or sample number for raw media; ``None``: unset).
    #[getter]
    fn offset(&self) -> Option<u64> {
        time(self.meta.offset)
    }

    /// ``GstBufferFlags`` bits (``DISCONT`` is 0x40, ``DELTA_UNIT`` 0x2000, ...).
    #[getter]
    fn flags(&self) -> u32 {
        self.meta.flags
    }

    /// This frame's number in the stream this consumer received (0, 1, 2, ...).
    #[getter]
    fn seq(&self) -> u64 {
        self.seq
    }

    /// Frames the producer dropped for this consumer just before this one.
    #[getter]
    fn dropped_before(&self) -> u32 {
        self.dropped
    }

    /// ``True`` when the bytes are a private copy (``copy=True``, or enough frames
    /// held); ``False`` when they are the producer's slot.
    #[getter]
    fn is_copy(&self) -> bool {
        matches!(self.body, Body::Copied(_))
    }

    /// Bytes of the frame.
    #[getter]
    fn nbytes(&self) -> usize {
        self.len
    }

    fn __len__(&self) -> usize {
        self.len
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmring.Frame seq={} {} bytes pts={} {}>",
            self.seq,
            self.len,
            time(self.meta.pts).map_or("none".into(), |t| t.to_string()),
            self.caps
                .as_ref()
                .map_or("no caps".into(), |c| c.to_string())
        )
    }

    /// The buffer protocol: the frame's `len` bytes, read-only.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let me = slf.get();
        let ptr = me.ptr();
        let len = me.len as ffi::Py_ssize_t;
        // SAFETY: `view` is the Py_buffer Python passed us to fill. `ptr` points at
        // `len` readable bytes that stay mapped while `slf` lives (a frame in place
        // holds its arena's mapping; a copy is our own memory), and the filled view
        // takes a reference to `slf`, released with the view. The view is read-only
        // (a request for a writable one fails), so Python never writes the
        // producer's memory; the producer may still change the bytes under a
        // reader, which gives that reader some bytes, never memory outside the
        // mapping.
        let rc =
            unsafe { ffi::PyBuffer_FillInfo(view, slf.as_ptr(), ptr as *mut _, len, 1, flags) };
        if rc != 0 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }
}
