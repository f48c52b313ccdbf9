//! `shmring.Producer`: publishes Python buffers (numpy arrays, bytes) with caps, in
//! the encoding `shmringsrc` reads.

use std::sync::Mutex;
use std::time::Duration;

use gstshmring::codec::trust::Format;
use gstshmring::codec::{BufferMeta, NONE, Side, VideoLayout, key};
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use shmring::{Policy, ProducerConfig, PublishError};

use crate::Error;
use crate::caps::Caps;

struct State {
    producer: shmring::Producer,
    caps: gst::Caps,
    format: Format,
    /// The layout every video frame is published with: the caps' own.
    video: Option<VideoLayout>,
}

/// Serves frames to any number of consumers: ``shmringsrc`` elements (``shmringsrc
/// producer-name=NAME ! videoconvert ! ...``) or ``shmring.Consumer`` objects in other
/// processes.
///
/// ``target`` is a name (served at ``$XDG_RUNTIME_DIR/shmring/NAME``, in a private
/// directory made if missing) or a socket path; ``None`` serves only sockets given
/// to ``add_socket``. ``caps`` is GStreamer's caps text of the stream, one fixed
/// structure (``video/x-raw,format=RGB,width=640,height=480,framerate=30/1``),
/// checked as a consumer will check it.
///
/// A consumer that cannot keep up makes ``publish`` wait up to ``block_timeout``
/// seconds and is then cut off (``on_slow_consumer="block"``), or misses frames
/// (``"drop"``).
#[pyclass(module = "shmring")]
pub struct Producer {
    state: Mutex<Option<State>>,
    path: Option<String>,
}

fn state_caps(text: &str) -> PyResult<(gst::Caps, Format, Option<VideoLayout>)> {
    let (caps, format) = crate::check_caps(text).map_err(PyValueError::new_err)?;
    let video = match &format {
        Format::Video(info) => Some(VideoLayout::of(info)),
        _ => None,
    };
    Ok((caps, format, video))
}

fn publish_error(e: PublishError) -> PyErr {
    match e {
        PublishError::NoSlot { .. } => PyTimeoutError::new_err(e.to_string()),
        e => Error::new_err(e.to_string()),
    }
}

fn send(producer: &shmring::Producer, side: &Side, key: u32) -> PyResult<()> {
    producer
        .send_side(&side.encode(), key)
        .map_err(publish_error)
}

fn announce(st: &State) -> PyResult<()> {
    // What a probe (the device provider) is told, as shmringsink tells it.
    gstshmring::codec::description::announce(&st.producer, &st.caps);
    send(&st.producer, &Side::Caps(st.caps.clone()), key::CAPS)
}

fn time(what: &str, v: Option<i64>) -> PyResult<u64> {
    match v {
        None => Ok(NONE),
        Some(t) if t >= 0 => Ok(t as u64),
        Some(t) => Err(PyValueError::new_err(format!(
            "{what} {t} is negative: timestamps are nanoseconds from 0"
        ))),
    }
}

#[pymethods]
impl Producer {
    #[new]
    #[pyo3(signature = (target, caps, *, on_slow_consumer = "block", block_timeout = 1.0, max_consumers = None, slots = None))]
    fn new(
        py: Python<'_>,
        target: Option<std::path::PathBuf>,
        caps: &str,
        on_slow_consumer: &str,
        block_timeout: f64,
        max_consumers: Option<usize>,
        slots: Option<u32>,
    ) -> PyResult<Producer> {
        crate::gst_ready()?;
        let (caps, format, video) = state_caps(caps)?;
        let mut cfg = ProducerConfig {
            policy: match on_slow_consumer {
                "block" => Policy::Block,
                "drop" => Policy::Drop,
                other => {
                    return Err(PyValueError::new_err(format!(
                        "on_slow_consumer is \"block\" or \"drop\", not {other:?}"
                    )));
                }
            },
            block_timeout: crate::seconds(block_timeout, "block_timeout")?,
            ..Default::default()
        };
        if let Some(n) = max_consumers {
            cfg.max_consumers = n;
        }
        if let Some(n) = slots {
            cfg.slots = n;
        }
        let path = match target {
            None => None,
            Some(t) => {
                let t = t.to_string_lossy().into_owned();
                Some(if t.contains('/') {
                    t
                } else {
                    gstshmring::names::serve_path(&t)
                        .map_err(|e| PyValueError::new_err(e.to_string()))?
                })
            }
        };
        let producer = py
            .detach(|| match &path {
                Some(p) => shmring::Producer::bind(p, cfg),
                None => shmring::Producer::new(cfg),
            })
            .map_err(|e| Error::new_err(e.to_string()))?;
        let stream_id = format!("shmring-python-{}", std::process::id());
        send(
            &producer,
            &Side::StreamStart { stream_id },
            key::STREAM_START,
        )?;
        let st = State {
            producer,
            caps,
            format,
            video,
        };
        announce(&st)?;
        Ok(Producer {
            state: Mutex::new(Some(st)),
            path,
        })
    }

    /// Publishes one frame: ``data`` is anything with the buffer protocol (a numpy
    /// array, ``bytes``), copied once into a shared slot. Raw video must be one
    /// whole frame of the caps in GStreamer's default layout: the planes one after
    /// the other, each row padded to a multiple of 4 bytes (a ``(height, width, 4)``
    /// RGBA array as it is; an RGB array whose rows are not a multiple of 4 bytes
    /// padded, e.g. ``numpy.pad(a, ((0, 0), (0, pad), (0, 0)))`` then its bytes row by
    /// row); raw audio whole sample frames. Timestamps are
    /// nanoseconds (``None``: unset). Returns how many consumers got the frame.
    #[pyo3(signature = (data, *, pts = None, dts = None, duration = None, offset = None, flags = 0))]
    #[allow(clippy::too_many_arguments)]
    fn publish(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        pts: Option<i64>,
        dts: Option<i64>,
        duration: Option<i64>,
        offset: Option<i64>,
        flags: u32,
    ) -> PyResult<usize> {
        let buf = bytes_of(data)?;
        let len = buf.len_bytes();
        let m = {
            let g = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let st = g
                .as_ref()
                .ok_or_else(|| Error::new_err("the producer has ended"))?;
            let m = BufferMeta {
                pts: time("pts", pts)?,
                dts: time("dts", dts)?,
                duration: time("duration", duration)?,
                offset: time("offset", offset)?,
                offset_end: NONE,
                base_time: NONE,
                flags,
                video: st.video,
                list_continues: false,
                metas_tag: 0,
            };
            if let Format::Video(info) = &st.format {
                if len != info.size() {
                    return Err(PyValueError::new_err(format!(
                        "a {}x{} {} frame is {} bytes in GStreamer's layout (strides {:?}), not {len}",
                        info.width(),
                        info.height(),
                        info.format(),
                        info.size(),
                        &info.stride()[..info.n_planes() as usize],
                    )));
                }
            }
            // What a consumer will check, checked here first.
            st.format
                .check(len, &m)
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
            m
        };
        let slot = py.detach(|| {
            let g = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let st = g
                .as_ref()
                .ok_or_else(|| Error::new_err("the producer has ended"))?;
            st.producer.acquire(len).map_err(publish_error)
        })?;
        {
            // SAFETY: the slot is ours alone until published (the producer's ledger
            // hands a slot to one writer), `capacity() >= len` bytes of writable
            // mapping from `as_mut_ptr()`, kept mapped while `slot` lives; consumers
            // map arenas read-only, so nothing else writes these bytes meanwhile.
            let dst = unsafe { std::slice::from_raw_parts_mut(slot.as_mut_ptr(), len) };
            buf.copy_to_slice(py, dst)?;
        }
        let meta = m.encode();
        py.detach(|| slot.publish(len, &meta))
            .map_err(publish_error)
    }

    /// New caps for the frames that follow (each consumer gets them before the next
    /// frame).
    fn set_caps(&self, caps: &str) -> PyResult<()> {
        let (caps, format, video) = state_caps(caps)?;
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let st = g
            .as_mut()
            .ok_or_else(|| Error::new_err("the producer has ended"))?;
        st.caps = caps;
        st.format = format;
        st.video = video;
        announce(st)
    }

    /// The caps frames are published with.
    #[getter]
    fn caps(&self) -> PyResult<Caps> {
        let g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let st = g
            .as_ref()
            .ok_or_else(|| Error::new_err("the producer has ended"))?;
        Ok(Caps {
            caps: st.caps.clone(),
        })
    }

    /// The socket path consumers connect to (``None``: sockets only).
    #[getter]
    fn path(&self) -> Option<String> {
        self.path.clone()
    }

    /// Consumers connected now.
    #[getter]
    fn consumers(&self) -> usize {
        let g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        g.as_ref().map_or(0, |st| st.producer.consumer_count())
    }

    /// Waits until ``n`` consumers are connected, up to ``timeout`` seconds
    /// (``None``: as long as it takes); ``TimeoutError`` after that.
    #[pyo3(signature = (n = 1, timeout = None))]
    fn wait_for_consumers(&self, py: Python<'_>, n: usize, timeout: Option<f64>) -> PyResult<()> {
        let limit = match timeout {
            Some(t) => Some(crate::seconds(t, "timeout")?),
            None => None,
        };
        let start = std::time::Instant::now();
        loop {
            // Short waits, so that Ctrl-C gets through.
            let slice = Duration::from_millis(100);
            let left = limit.map(|l| l.saturating_sub(start.elapsed()));
            let wait = left.map_or(slice, |l| l.min(slice));
            let r = py.detach(|| {
                let g = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let st = g
                    .as_ref()
                    .ok_or_else(|| Error::new_err("the producer has ended"))?;
                Ok::<_, PyErr>(st.producer.wait_for_consumers(n, Some(wait)))
            })?;
            match r {
                Ok(()) => return Ok(()),
                Err(shmring::WaitError::Timeout) => {}
                Err(e) => return Err(Error::new_err(e.to_string())),
            }
            if left.is_some_and(|l| l <= wait) {
                return Err(PyTimeoutError::new_err(format!(
                    "fewer than {n} consumers came in time"
                )));
            }
            py.check_signals()?;
        }
    }

    /// Serves a consumer on a connected ``SOCK_SEQPACKET`` socket (one end of
    /// ``socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)``, the other
    /// handed to the consumer's process); the fd stays the caller's.
    fn add_socket(&self, fd: i32) -> PyResult<()> {
        let own = gstshmring::dup_app_fd(fd)
            .map_err(|e| PyValueError::new_err(format!("fd {fd}: {e}")))?;
        let g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let st = g
            .as_ref()
            .ok_or_else(|| Error::new_err("the producer has ended"))?;
        st.producer
            .add_connection(own)
            .map_err(|e| Error::new_err(e.to_string()))
    }

    /// Ends the stream: consumers get everything published, then its end (``None``
    /// from ``recv``, EOS from ``shmringsrc``). The socket goes away.
    fn end(&self, py: Python<'_>) -> PyResult<()> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(st) = st {
            send(&st.producer, &Side::Eos, 0)?;
            // Dropping the producer says goodbye to each consumer after its last frame.
            py.detach(move || drop(st));
        }
        Ok(())
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<()> {
        self.end(py)
    }

    fn __repr__(&self) -> String {
        format!(
            "shmring.Producer({:?})",
            self.path.as_deref().unwrap_or("sockets")
        )
    }
}

/// `data` as one buffer of bytes: its own if C-contiguous, a contiguous copy if not
/// (a crop of an array).
fn bytes_of(data: &Bound<'_, PyAny>) -> PyResult<PyBuffer<u8>> {
    let py = data.py();
    let memoryview = py.import("builtins")?.getattr("memoryview")?;
    let cast = |o: &Bound<'_, PyAny>| -> PyResult<PyBuffer<u8>> {
        let mv = memoryview.call1((o,))?.call_method1("cast", ("B",))?;
        PyBuffer::get(&mv)
    };
    match cast(data) {
        Ok(b) => Ok(b),
        Err(_) => {
            let contiguous = py
                .import("numpy")?
                .getattr("ascontiguousarray")?
                .call1((data,))?;
            cast(&contiguous)
        }
    }
}
