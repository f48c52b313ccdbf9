//! `shmring._shmring`, the extension module of the Python package `shmring`: frames
//! of a `shmringsink` (or of any producer speaking the plugin's encoding) as
//! read-only numpy arrays over the shared slots, and a producer `shmringsrc` reads.
//!
//! Nothing here interprets what a producer says on its own: caps are parsed by
//! GStreamer's caps parser and checked, and every buffer's size, layout and flags
//! checked, by the plugin's [`gstshmring::codec::trust`], the code `shmringsrc` runs. No
//! pipeline runs and no plugin is loaded: GStreamer's core, video and audio libraries
//! give caps and layouts their meaning. The Python side (`python/shmring`) adds the
//! docs, type hints and nothing else.

use std::sync::OnceLock;
use std::time::Duration;

use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;

mod caps;
mod consumer;
mod layout;
mod producer;

pyo3::create_exception!(
    shmring,
    Error,
    PyException,
    "A shmring call failed: a producer gone, a socket that is no producer's, a system call."
);
pyo3::create_exception!(
    shmring,
    PeerError,
    Error,
    "The producer lied or broke the protocol; the message names the lie. The consumer is disconnected and raises it again on every later call."
);

/// Initializes GStreamer's types once (caps, video and audio formats).
pub(crate) fn gst_ready() -> PyResult<()> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| gst::init().map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| Error::new_err(format!("GStreamer did not initialize: {e}")))
}

/// Caps text a producer sent or a Python producer gives, parsed and checked as
/// `shmringsrc` checks the caps it receives.
pub(crate) fn check_caps(
    text: &str,
) -> Result<(gst::Caps, gstshmring::codec::trust::Format), String> {
    let caps = gstshmring::codec::caps_from_text(text).map_err(|e| e.to_string())?;
    let format = gstshmring::codec::trust::accept_caps(&caps).map_err(|e| e.to_string())?;
    Ok((caps, format))
}

/// A duration argument in seconds.
pub(crate) fn seconds(s: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| PyValueError::new_err(format!("{what} {s} is not a number of seconds")))
}

#[pymodule]
fn _shmring(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<consumer::Consumer>()?;
    m.add_class::<consumer::Frame>()?;
    m.add_class::<producer::Producer>()?;
    m.add_class::<caps::Caps>()?;
    m.add("Error", m.py().get_type::<Error>())?;
    m.add("PeerError", m.py().get_type::<PeerError>())?;
    m.add("READ_PAD", shmring::frame::READ_PAD)?;
    Ok(())
}
