//! GStreamer elements over the shmring frame channel:
//!
//! - **`shmringsink`** serves any number of `shmringsrc`s on a unix socket path.
//! - **`shmringsrc`** connects to it and outputs the producer's caps and buffers.
//!
//! ```text
//! gst-launch-1.0 videotestsrc is-live=true ! video/x-raw,width=1920,height=1080 ! shmringsink socket-path=/run/user/1000/cam
//! gst-launch-1.0 shmringsrc socket-path=/run/user/1000/cam ! videoconvert ! autovideosink
//! ```
//!
//! The library is both the plugin (`libgstshmring.so`, for `GST_PLUGIN_PATH`) and an
//! rlib: [`plugin_register_static`] registers the elements in-process (tests).

use gst::glib;

pub mod codec;
mod element;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod fuzzing;
mod memory;
pub mod names;
mod provider;
mod shmringsink;
mod shmringsrc;

pub use shmringsink::ShmringSink;
pub use shmringsrc::ShmringSrc;

/// Durations in the units properties say: settings keep `Duration`s, properties
/// speak milliseconds or microseconds (saturating at `u32::MAX`).
pub(crate) mod units {
    use std::time::Duration;

    use gst::glib;

    pub(crate) fn ms(d: Duration) -> u32 {
        u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
    }

    pub(crate) fn us(d: Duration) -> u32 {
        u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
    }

    pub(crate) fn from_ms(v: &glib::Value) -> Duration {
        Duration::from_millis(v.get::<u32>().expect("a u32 property").into())
    }

    pub(crate) fn from_us(v: &glib::Value) -> Duration {
        Duration::from_micros(v.get::<u32>().expect("a u32 property").into())
    }
}

/// A close-on-exec duplicate of the application's fd `fd` (a `socket-fd` or
/// `consumer-fd` property, a Python consumer's `fd`): the application keeps its own.
pub fn dup_app_fd(fd: i32) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on any integer is defined: it returns a new fd
    // or -1 (a bad fd number is EBADF, never undefined behaviour).
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `dup` is a fresh, valid fd that nothing else owns; the callers check it
    // is a connected seqpacket socket (by the handshake) before relying on it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(dup) })
}

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    shmringsink::register(plugin)?;
    shmringsrc::register(plugin)?;
    provider::register(plugin)?;
    Ok(())
}

/// What `gst::plugin_define!` generates (the plugin descriptor GStreamer looks up,
/// and `plugin_register_static`).
#[allow(missing_docs)]
mod registration {
    use super::plugin_init;

    gst::plugin_define!(
        shmring,
        env!("CARGO_PKG_DESCRIPTION"),
        plugin_init,
        concat!(env!("CARGO_PKG_VERSION"), "-shmring"),
        "MIT/X11",
        env!("CARGO_PKG_NAME"),
        env!("CARGO_PKG_NAME"),
        "https://example.invalid/shmring",
        "2026-11-28"
    );
}

pub use registration::plugin_register_static;
