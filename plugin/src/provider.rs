//! `shmringdeviceprovider`: lists the named producers of this user (the sockets in
//! the directory of [`crate::names`]) as devices, with their caps and class, so
//! that `gst-device-monitor-1.0` shows them and `gst_device_create_element` gives a
//! `shmringsrc` set to one.
//!
//! A producer's caps come from a probe (`Consumer::probe`): the producer answers
//! what it serves and closes; it counts the probe apart, never as a consumer. Only
//! producers that answer with caps are listed. The
//! directory is watched with inotify, and looked at again every second (a producer
//! killed leaves its socket behind, and a producer's caps change without any file
//! event), so producers that appear, vanish or change are added and removed.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "shmringdeviceprovider",
        gst::DebugColorFlags::empty(),
        Some("shmring device provider: lists this user's named producers"),
    )
});

/// How long one producer may take to answer a probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);
/// How often the directory is looked at again without a file event.
const RESCAN: Duration = Duration::from_secs(1);
/// The most producers listed (a directory filled with sockets cannot make the
/// monitor probe without end).
const MAX_PRODUCERS: usize = 256;

/// What a producer said of itself: its caps.
#[derive(Clone, Debug, PartialEq)]
struct Found {
    caps: gst::Caps,
}

/// The sockets in `dir` that answer a probe with caps, by name. Left out: names a
/// producer could not have, files that are not sockets, producers that do not
/// answer or answer anything but caps (one that has no caps yet is listed once it
/// has: the directory is looked at again every second).
fn scan(dir: &Path) -> BTreeMap<String, Found> {
    let mut found = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        if found.len() >= MAX_PRODUCERS {
            gst::warning!(
                CAT,
                "more than {MAX_PRODUCERS} producers; the rest not listed"
            );
            break;
        }
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        if crate::names::check_name(&name).is_err() || !e.file_type().is_ok_and(|t| t.is_socket()) {
            continue;
        }
        match shmring::Consumer::probe(e.path(), PROBE_TIMEOUT) {
            Ok(desc) => match crate::codec::description::caps_of(&desc) {
                Some(caps) => {
                    found.insert(name, Found { caps });
                }
                None => gst::debug!(CAT, "{name}: no caps in its answer to a probe"),
            },
            Err(err) => gst::debug!(CAT, "{name}: no answer to a probe ({err})"),
        }
    }
    found
}

/// A device's class by its caps.
fn class_of(caps: Option<&gst::Caps>) -> &'static str {
    let media = caps
        .and_then(|c| c.structure(0))
        .map(|s| s.name().as_str().to_owned())
        .unwrap_or_default();
    if media.starts_with("video/") || media.starts_with("image/") {
        "Video/Source"
    } else if media.starts_with("audio/") {
        "Audio/Source"
    } else {
        "Source"
    }
}

fn device(dir: &Path, name: &str, f: &Found) -> gst::Device {
    let props = gst::Structure::builder("shmring-producer")
        .field("device.api", "shmring")
        .field("shmring.producer-name", name)
        .field(
            "shmring.socket-path",
            dir.join(name).to_string_lossy().as_ref(),
        )
        .build();
    let d: ShmringDevice = glib::Object::builder()
        .property("display-name", format!("shmring producer {name}"))
        .property("device-class", class_of(Some(&f.caps)))
        .property("caps", f.caps.clone())
        .property("properties", props)
        .build();
    *d.imp().name.lock().unwrap() = name.to_string();
    d.upcast()
}

// -- the device --

mod device_imp {
    use super::*;

    #[derive(Default)]
    pub struct Device {
        pub(super) name: Mutex<String>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for Device {
        const NAME: &'static str = "GstShmringDevice";
        type Type = super::ShmringDevice;
        type ParentType = gst::Device;
    }

    impl ObjectImpl for Device {}
    impl GstObjectImpl for Device {}

    impl DeviceImpl for Device {
        fn create_element(&self, name: Option<&str>) -> Result<gst::Element, gst::LoggableError> {
            let producer = self.name.lock().unwrap().clone();
            let mut b = gst::ElementFactory::make("shmringsrc").property("producer-name", producer);
            if let Some(n) = name {
                b = b.name(n);
            }
            b.build()
                .map_err(|e| gst::loggable_error!(CAT, "cannot make a shmringsrc: {e}"))
        }
    }
}

glib::wrapper! {
    /// A named producer, as `shmringdeviceprovider` lists it.
    pub struct ShmringDevice(ObjectSubclass<device_imp::Device>) @extends gst::Device, gst::Object;
}

// -- the provider --

mod provider_imp {
    use super::*;

    /// The monitoring thread and what stops it.
    pub(super) struct Monitor {
        pub(super) stop: shmring::Waker,
        pub(super) thread: std::thread::JoinHandle<()>,
    }

    #[derive(Default)]
    pub struct Provider {
        pub(super) monitor: Mutex<Option<Monitor>>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for Provider {
        const NAME: &'static str = "GstShmringDeviceProvider";
        type Type = super::ShmringDeviceProvider;
        type ParentType = gst::DeviceProvider;
    }

    impl ObjectImpl for Provider {}
    impl GstObjectImpl for Provider {}

    impl DeviceProviderImpl for Provider {
        fn metadata() -> Option<&'static gst::subclass::DeviceProviderMetadata> {
            static META: LazyLock<gst::subclass::DeviceProviderMetadata> = LazyLock::new(|| {
                gst::subclass::DeviceProviderMetadata::new(
                    "shmring producers",
                    "Source/Video/Audio",
                    "Lists this user's named shmringsink producers ($XDG_RUNTIME_DIR/shmring) with their caps",
                    "shmring developers",
                )
            });
            Some(&*META)
        }

        fn probe(&self) -> Vec<gst::Device> {
            let dir = crate::names::directory();
            if crate::names::check_directory(&dir).is_err() {
                return Vec::new();
            }
            scan(&dir)
                .iter()
                .map(|(name, f)| device(&dir, name, f))
                .collect()
        }

        fn start(&self) -> Result<(), gst::LoggableError> {
            let dir =
                crate::names::ensure_directory().map_err(|e| gst::loggable_error!(CAT, "{e}"))?;
            let inotify = watch(&dir).map_err(|e| gst::loggable_error!(CAT, "{e}"))?;
            let stop = shmring::Waker::new().map_err(|e| gst::loggable_error!(CAT, "{e}"))?;
            let obj = self.obj().downgrade();
            // The first listing is made before start returns: a monitor that starts
            // and lists at once sees every producer already there.
            let first = scan(&dir);
            let mut devices = BTreeMap::new();
            for (name, f) in &first {
                let d = device(&dir, name, f);
                self.obj().device_add(&d);
                devices.insert(name.clone(), d);
            }
            let waker = stop.clone();
            let thread = std::thread::Builder::new()
                .name("shmring-devices".into())
                .spawn(move || watch_loop(obj, dir, inotify, waker, first, devices))
                .map_err(|e| gst::loggable_error!(CAT, "cannot start watching: {e}"))?;
            *self.monitor.lock().unwrap() = Some(Monitor { stop, thread });
            Ok(())
        }

        fn stop(&self) {
            if let Some(m) = self.monitor.lock().unwrap().take() {
                m.stop.wake();
                let _ = m.thread.join();
            }
            // GStreamer drops the provider's devices after this returns (and holds
            // the lock `devices()` takes meanwhile: not called here).
        }
    }
}

glib::wrapper! {
    /// `shmringdeviceprovider`.
    pub struct ShmringDeviceProvider(ObjectSubclass<provider_imp::Provider>) @extends gst::DeviceProvider, gst::Object;
}

/// Why the directory of named producers cannot be watched.
#[derive(Debug, thiserror::Error)]
enum WatchError {
    #[error("inotify: {0}")]
    Inotify(#[source] std::io::Error),
    #[error("{} has a NUL", .0.display())]
    Nul(std::path::PathBuf),
    #[error("cannot watch {}: {source}", .dir.display())]
    AddWatch {
        dir: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An inotify instance watching `dir` for sockets made, removed and renamed.
fn watch(dir: &Path) -> Result<OwnedFd, WatchError> {
    // SAFETY: inotify_init1 takes flags only; the result is checked.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(WatchError::Inotify(std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a fresh inotify fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| WatchError::Nul(dir.to_owned()))?;
    let mask = libc::IN_CREATE
        | libc::IN_DELETE
        | libc::IN_MOVED_FROM
        | libc::IN_MOVED_TO
        | libc::IN_DELETE_SELF
        | libc::IN_ONLYDIR;
    // SAFETY: a valid inotify fd and a NUL-terminated path that outlives the call.
    if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask) } < 0 {
        return Err(WatchError::AddWatch {
            dir: dir.to_owned(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(fd)
}

/// Empties the inotify queue (what changed is found by looking again).
fn drain(fd: &OwnedFd) {
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reads into a live buffer of its length from our own fd.
        let r = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if r <= 0 {
            return;
        }
    }
}

fn watch_loop(
    obj: glib::WeakRef<ShmringDeviceProvider>,
    dir: std::path::PathBuf,
    inotify: OwnedFd,
    stop: shmring::Waker,
    mut listed: BTreeMap<String, Found>,
    mut devices: BTreeMap<String, gst::Device>,
) {
    // (Never `devices()` here: `stop` holds the lock it takes while it waits for
    // this thread.)
    loop {
        let mut fds = [
            libc::pollfd {
                fd: inotify.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two live pollfds, their count, a timeout in ms.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, RESCAN.as_millis() as libc::c_int) };
        if stop.take() {
            return;
        }
        drain(&inotify);
        let now = scan(&dir);
        let Some(p) = obj.upgrade() else {
            return;
        };
        for (name, f) in &listed {
            if now.get(name) != Some(f) {
                if let Some(d) = devices.remove(name) {
                    gst::debug!(CAT, "producer {name} gone or changed");
                    p.device_remove(&d);
                }
            }
        }
        for (name, f) in &now {
            if listed.get(name) != Some(f) {
                gst::debug!(CAT, "producer {name}: {:?}", f.caps);
                let d = device(&dir, name, f);
                p.device_add(&d);
                devices.insert(name.clone(), d);
            }
        }
        listed = now;
    }
}

pub(crate) fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::DeviceProvider::register(
        Some(plugin),
        "shmringdeviceprovider",
        gst::Rank::MARGINAL,
        ShmringDeviceProvider::static_type(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_by_caps() {
        gst::init().unwrap();
        let v =
            crate::codec::description::caps_of(b"video/x-raw, format=(string)I420, width=(int)64");
        assert_eq!(class_of(v.as_ref()), "Video/Source");
        let a = crate::codec::description::caps_of(b"audio/x-raw, rate=(int)48000");
        assert_eq!(class_of(a.as_ref()), "Audio/Source");
        assert_eq!(
            class_of(crate::codec::description::caps_of(b"text/x-raw").as_ref()),
            "Source"
        );
    }
}
