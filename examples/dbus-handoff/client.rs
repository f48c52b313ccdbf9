//! The D-Bus hand-off, client side: asks the camera service on the session bus for
//! a stream (`OpenStream` returns a connected socket fd), then receives its frames
//! zero-copy through shmring and checks them.
//!
//! Usage: `dbus-client [FRAMES]` (default 60). Prints what it received.

use std::time::Duration;

use shmring::{Consumer, ConsumerConfig, Event};
use zbus::{proxy, zvariant};

#[proxy(
    interface = "org.shmring.Camera1",
    default_service = "org.shmring.Camera",
    default_path = "/org/shmring/Camera"
)]
trait Camera {
    fn open_stream(&self) -> zbus::Result<zvariant::OwnedFd>;
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let want: u64 = std::env::args().nth(1).map_or(Ok(60), |a| a.parse())?;
    let bus = zbus::blocking::Connection::session()?;
    let camera = CameraProxyBlocking::new(&bus)?;
    let fd: std::os::fd::OwnedFd = camera.open_stream()?.into();
    // The fd is the service's word: from_fd checks it is a connected seqpacket
    // socket, and the hand-off checks everything after it.
    let mut c = Consumer::from_fd(fd, ConsumerConfig::default())?;
    let (mut got, mut bytes) = (0u64, 0u64);
    let mut first = None;
    while got < want {
        match c.recv_timeout(Duration::from_secs(10))? {
            Event::Frame(f) => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&f.meta()[..8]);
                let seq = u64::from_le_bytes(n);
                let first = *first.get_or_insert(seq);
                if seq != first + got {
                    return Err(format!("frame {seq} where {} was due", first + got).into());
                }
                if f.to_vec().iter().any(|&b| b != seq as u8) {
                    return Err(format!("frame {seq}: wrong bytes").into());
                }
                got += 1;
                bytes += f.len() as u64;
            }
            Event::Side { .. } => {}
            Event::End { reason } => return Err(format!("ended after {got}: {reason}").into()),
        }
    }
    println!("client: received {got} frames, {bytes} bytes, in order and intact");
    Ok(())
}
