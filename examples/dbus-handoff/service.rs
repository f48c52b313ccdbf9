//! The D-Bus hand-off, service side: a camera service on the session bus whose
//! method `OpenStream` returns a connected socket to its frame producer, the way a
//! desktop portal hands an application a camera stream. No socket path exists:
//! the stream is reachable only through the fds the bus carries.
//!
//! Usage: `dbus-service [FRAMES]` (default: until killed). Publishes 320x240 RGBA
//! frames at 30 per second once a client has opened a stream; each frame's bytes
//! are its number (mod 256) and its metadata the number, little-endian.

use std::sync::Arc;
use std::time::Duration;

use shmring::{Producer, ProducerConfig, fdpass};
use zbus::{blocking::connection, fdo, interface, zvariant};

/// Bus name and object of the service.
const NAME: &str = "org.shmring.Camera";
const PATH: &str = "/org/shmring/Camera";
const FRAME: usize = 320 * 240 * 4;

struct Camera {
    producer: Arc<Producer>,
}

#[interface(name = "org.shmring.Camera1")]
impl Camera {
    /// A new consumer's end of a connected socket pair; the producer serves the
    /// other end. The caller passes it to `shmring::Consumer::from_fd`.
    fn open_stream(&self) -> fdo::Result<zvariant::OwnedFd> {
        let (ours, theirs) = fdpass::socket_pair(libc::SOCK_SEQPACKET)
            .map_err(|e| fdo::Error::Failed(format!("socket pair: {e}")))?;
        self.producer
            .add_connection(ours)
            .map_err(|e| fdo::Error::Failed(format!("cannot serve: {e}")))?;
        println!("service: stream opened");
        Ok(theirs.into())
    }

    /// Frames published so far.
    #[zbus(property)]
    fn frames(&self) -> u64 {
        self.producer.stats().frames
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let frames: Option<u64> = std::env::args().nth(1).map(|a| a.parse()).transpose()?;
    let producer = Arc::new(Producer::new(ProducerConfig::default())?);
    let _bus = connection::Builder::session()?
        .name(NAME)?
        .serve_at(
            PATH,
            Camera {
                producer: producer.clone(),
            },
        )?
        .build()?;
    println!("service: ready as {NAME} on the session bus");
    producer.wait_for_consumers(1, None)?;
    let mut seq = 0u64;
    while frames.is_none_or(|n| seq < n) {
        let mut slot = producer.acquire(FRAME)?;
        slot.write(0, &vec![seq as u8; FRAME])?;
        slot.publish(FRAME, &seq.to_le_bytes())?;
        seq += 1;
        std::thread::sleep(Duration::from_millis(33));
    }
    println!("service: published {seq} frames");
    Ok(())
}
