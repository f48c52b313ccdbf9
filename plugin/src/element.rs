//! What `shmringsink` and `shmringsrc` have in common as GStreamer elements: where
//! their socket is (`socket-path`, `producer-name`, or a `shmring://` URI), and the
//! one always-present pad of any caps.

use gst::glib;
use gst::prelude::*;

use crate::names::{NameError, Target, connect_path, serve_path, uri_of, uri_target};

/// The element's side of the socket: the sink serves it, the source connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// `shmringsink`.
    Serves,
    /// `shmringsrc`.
    Connects,
}

/// Why an element's [`Place`] gives no socket path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PlaceError {
    /// Both `socket-path` and `producer-name` are set.
    Both,
    /// The name, or the directory it is served in, cannot be used.
    Name(NameError),
}

impl From<NameError> for PlaceError {
    fn from(e: NameError) -> PlaceError {
        PlaceError::Name(e)
    }
}

impl std::fmt::Display for PlaceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlaceError::Both => write!(f, "set socket-path or producer-name, not both"),
            PlaceError::Name(e) => e.fmt(f),
        }
    }
}

/// Where an element's socket is: `socket-path` or `producer-name` (never both; a
/// URI sets one).
#[derive(Clone, Debug, Default)]
pub(crate) struct Place {
    pub(crate) socket_path: Option<String>,
    /// A named producer, in this user's directory of producers.
    pub(crate) producer_name: Option<String>,
}

impl Place {
    /// The properties that set it, with what they mean on `role`.
    pub(crate) fn properties(role: Role) -> [glib::ParamSpec; 2] {
        let (path, name) = match role {
            Role::Serves => (
                "Unix socket path consumers connect to (a stale socket left by a crashed sink is replaced; a live one is never taken)",
                "Serve under this name (letters, digits, '_', '-', '.') in this user's private directory of producers, $XDG_RUNTIME_DIR/shmring/NAME (or /tmp/shmring-UID/NAME without a runtime directory), made 0700 if missing; consumers use shmringsrc producer-name=NAME or the URI shmring://NAME, and the device provider lists it. Instead of socket-path",
            ),
            Role::Connects => (
                "Unix socket path of the shmringsink to receive from",
                "Name of the shmringsink (its producer-name) to receive from, served in this user's directory of producers ($XDG_RUNTIME_DIR/shmring/NAME, or /tmp/shmring-UID/NAME without a runtime directory); instead of socket-path. The URI shmring://NAME sets it",
            ),
        };
        [
            glib::ParamSpecString::builder("socket-path")
                .nick("Socket path")
                .blurb(path)
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("producer-name")
                .nick("Producer name")
                .blurb(name)
                .mutable_ready()
                .build(),
        ]
    }

    /// Sets property `name` if it is one of this place's; `false` otherwise.
    pub(crate) fn set_property(&mut self, name: &str, value: &glib::Value) -> bool {
        let field = match name {
            "socket-path" => &mut self.socket_path,
            "producer-name" => &mut self.producer_name,
            _ => return false,
        };
        *field = value.get().expect("a string property");
        true
    }

    /// Property `name` if it is one of this place's.
    pub(crate) fn property(&self, name: &str) -> Option<glib::Value> {
        match name {
            "socket-path" => Some(self.socket_path.to_value()),
            "producer-name" => Some(self.producer_name.to_value()),
            _ => None,
        }
    }

    /// The element's URI (`GstURIHandler::uri`).
    pub(crate) fn uri(&self) -> Option<String> {
        uri_of(self.socket_path.as_deref(), self.producer_name.as_deref())
    }

    /// `GstURIHandler::set_uri` of `element`.
    pub(crate) fn set_uri(&mut self, element: &gst::Element, uri: &str) -> Result<(), glib::Error> {
        (self.socket_path, self.producer_name) = match uri_target(element, uri)? {
            Target::Path(p) => (Some(p), None),
            Target::Name(n) => (None, Some(n)),
        };
        Ok(())
    }

    /// The socket path on `role`: `socket-path`, or where `producer-name` is served.
    /// `Ok(None)`: neither is set.
    pub(crate) fn path(&self, role: Role) -> Result<Option<String>, PlaceError> {
        match (&self.socket_path, &self.producer_name) {
            (Some(_), Some(_)) => Err(PlaceError::Both),
            (Some(p), None) => Ok(Some(p.clone())),
            (None, Some(n)) if role == Role::Serves => Ok(Some(serve_path(n)?)),
            (None, Some(n)) => Ok(Some(connect_path(n)?)),
            (None, None) => Ok(None),
        }
    }
}

/// The `GstURIHandler` of an element whose settings hold a [`Place`]:
/// `shmring:///abs/path` sets `socket-path`, `shmring://NAME` sets `producer-name`
/// (`crate::names`), so that `playbin`, `uridecodebin` and `gst-play-1.0` find the
/// source, and `gst-launch-1.0 … ! shmring://cam` the sink. (At the expansion site:
/// GStreamer's prelude and subclass prelude.)
macro_rules! place_uri_handler {
    ($imp:ty, $uri_type:expr) => {
        impl URIHandlerImpl for $imp {
            const URI_TYPE: gst::URIType = $uri_type;

            fn protocols() -> &'static [&'static str] {
                &[crate::names::SCHEME]
            }

            fn uri(&self) -> Option<String> {
                self.settings.lock().unwrap().place.uri()
            }

            fn set_uri(&self, uri: &str) -> Result<(), glib::Error> {
                let mut s = self.settings.lock().unwrap();
                s.place.set_uri(self.obj().upcast_ref(), uri)
            }
        }
    };
}
pub(crate) use place_uri_handler;

/// `GstObjectImpl` and `ElementImpl` of an element with one always-present pad of any
/// caps: its long name, class and description, and the pad's name and direction.
macro_rules! one_pad_element {
    ($imp:ty, $long_name:literal, $class:literal, $description:literal, $pad:literal, $direction:expr) => {
        impl GstObjectImpl for $imp {}

        impl ElementImpl for $imp {
            fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
                static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
                    gst::subclass::ElementMetadata::new(
                        $long_name,
                        $class,
                        $description,
                        "shmring developers",
                    )
                });
                Some(&*META)
            }

            fn pad_templates() -> &'static [gst::PadTemplate] {
                static T: LazyLock<Vec<gst::PadTemplate>> =
                    LazyLock::new(|| crate::element::any_caps_pad($pad, $direction));
                T.as_ref()
            }
        }
    };
}
pub(crate) use one_pad_element;

/// The element's one pad, `name`, always present, of any caps.
pub(crate) fn any_caps_pad(name: &str, direction: gst::PadDirection) -> Vec<gst::PadTemplate> {
    vec![
        gst::PadTemplate::new(
            name,
            direction,
            gst::PadPresence::Always,
            &gst::Caps::new_any(),
        )
        .expect("a valid template"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_place_is_a_path_or_a_name_never_both() {
        gst::init().unwrap();
        let mut p = Place::default();
        assert_eq!(p.path(Role::Connects), Ok(None));
        assert!(p.set_property("socket-path", &Some("/tmp/x").to_value()));
        assert!(!p.set_property("copy", &true.to_value()));
        assert_eq!(p.path(Role::Serves), Ok(Some("/tmp/x".into())));
        assert_eq!(p.uri().as_deref(), Some("shmring:///tmp/x"));
        p.set_property("producer-name", &Some("cam").to_value());
        assert_eq!(p.path(Role::Connects), Err(PlaceError::Both));
        assert_eq!(
            p.property("producer-name")
                .unwrap()
                .get::<Option<String>>()
                .unwrap(),
            Some("cam".into())
        );
        assert!(p.property("copy").is_none());
    }
}
