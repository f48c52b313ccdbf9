//! `shmring.Caps`: a producer's caps, parsed (GStreamer's own caps parser) and checked
//! as `shmringsrc` checks them.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

/// The media type and fields of a stream, as a producer's caps say them.
///
/// ``str(caps)`` is GStreamer's caps text (``video/x-raw, format=(string)RGBA, ...``);
/// ``caps["width"]`` or ``caps.get("width")`` a field, ``caps.fields`` all of them as a
/// dict (ints, floats, bools, strings, ``fractions.Fraction`` for fractions, and the
/// caps text of anything else). ``width``, ``height``, ``format``, ``framerate``,
/// ``rate``, ``channels`` and ``layout`` are ``None`` where the caps have no such field.
#[pyclass(module = "shmring", frozen, eq, str)]
#[derive(Clone, PartialEq)]
pub struct Caps {
    pub(crate) caps: gst::Caps,
}

impl std::fmt::Display for Caps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.caps)
    }
}

impl Caps {
    fn structure(&self) -> &gst::StructureRef {
        self.caps
            .structure(0)
            .expect("checked caps have one structure")
    }

    fn value<'py>(&self, py: Python<'py>, v: &gst::glib::SendValue) -> PyResult<Bound<'py, PyAny>> {
        use gst::prelude::*;
        Ok(if let Ok(i) = v.get::<i32>() {
            i.into_pyobject(py)?.into_any()
        } else if let Ok(i) = v.get::<u32>() {
            i.into_pyobject(py)?.into_any()
        } else if let Ok(i) = v.get::<i64>() {
            i.into_pyobject(py)?.into_any()
        } else if let Ok(i) = v.get::<u64>() {
            i.into_pyobject(py)?.into_any()
        } else if let Ok(x) = v.get::<f64>() {
            x.into_pyobject(py)?.into_any()
        } else if let Ok(b) = v.get::<bool>() {
            b.into_pyobject(py)?.to_owned().into_any()
        } else if let Ok(s) = v.get::<String>() {
            s.into_pyobject(py)?.into_any()
        } else if let Ok(f) = v.get::<gst::Fraction>() {
            py.import("fractions")?
                .getattr("Fraction")?
                .call1((f.numer(), f.denom()))?
        } else {
            // Arrays, lists, bitmasks, flags: GStreamer's text of the value.
            v.serialize()
                .map(|s| s.to_string())
                .unwrap_or_else(|_| format!("<{}>", v.type_()))
                .into_pyobject(py)?
                .into_any()
        })
    }

    fn field<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
        match self.structure().value(name) {
            Ok(v) => self.value(py, v).map(Some),
            Err(_) => Ok(None),
        }
    }
}

#[pymethods]
impl Caps {
    /// The media type: ``video/x-raw``, ``audio/x-raw``, ``video/x-h264``, ...
    #[getter]
    fn media_type(&self) -> String {
        self.structure().name().to_string()
    }

    /// Every field, by name.
    #[getter]
    fn fields<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (name, v) in self.structure().iter() {
            d.set_item(name.as_str(), self.value(py, v)?)?;
        }
        Ok(d)
    }

    /// One field, or ``default`` where the caps have none of that name.
    #[pyo3(signature = (name, default = None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        Ok(self.field(py, name)?.or(default))
    }

    fn __getitem__<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        self.field(py, name)?.ok_or_else(|| {
            pyo3::exceptions::PyKeyError::new_err(format!(
                "caps {} have no field {name:?}",
                self.caps
            ))
        })
    }

    fn __contains__(&self, name: &str) -> bool {
        self.structure().has_field(name)
    }

    fn __repr__(&self) -> String {
        format!("Caps({:?})", self.caps.to_string())
    }

    /// Frame width in pixels (video).
    #[getter]
    fn width<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.field(py, "width")
    }

    /// Frame height in pixels (video).
    #[getter]
    fn height<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.field(py, "height")
    }

    /// Pixel or sample format: ``RGBA``, ``I420``, ``S16LE``, ...
    #[getter]
    fn format<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.field(py, "format")
    }

    /// Frames per second as a ``fractions.Fraction`` (video).
    #[getter]
    fn framerate<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.field(py, "framerate")
    }

    /// Samples per second (audio).
    #[getter]
    fn rate<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.field(py, "rate")
    }

    /// Channels (audio).
    #[getter]
    fn channels<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.field(py, "channels")
    }

    /// ``interleaved`` or ``non-interleaved`` (audio).
    #[getter]
    fn layout<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.field(py, "layout")
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        // Pickled as its text: `shmring.Caps.parse(text)` gives it back.
        let parse = py.get_type::<Caps>().getattr("parse")?;
        PyTuple::new(
            py,
            [parse, PyTuple::new(py, [self.caps.to_string()])?.into_any()],
        )
    }

    /// Parses caps text (one fixed structure, as a producer must send) and checks it
    /// as ``shmringsrc`` does: ``ValueError`` naming what is wrong.
    #[staticmethod]
    fn parse(text: &str) -> PyResult<Caps> {
        crate::gst_ready()?;
        let (caps, _) = crate::check_caps(text).map_err(pyo3::exceptions::PyValueError::new_err)?;
        Ok(Caps { caps })
    }
}
