//! D-Bus, for comparison: what a desktop app passes buffers with when it has no
//! shared memory. A private `dbus-daemon` of the bench's own, a server process
//! (this program again, `--dbus-server ADDRESS`) and this process as the client,
//! both speaking through zbus: `Put(seq, bytes)` (the server consumes and checks the
//! message, as the other transports' receivers do) and `Echo(bytes)`.
//!
//! Run last: the client's zbus threads stay, and the other measurements fork.

use super::*;

use std::process::{Child, Command, Stdio};

/// Bytes per D-Bus throughput round (a fraction of the others': it is slow).
const DBUS_TOTAL: usize = 64 << 20;
const NAME: &str = "org.shmring.Bench";
const PATH: &str = "/org/shmring/Bench";
const IFACE: &str = "org.shmring.Bench1";

struct Server;

#[zbus::interface(name = "org.shmring.Bench1")]
impl Server {
    // Byte arrays as `serde_bytes`, so that zbus copies them whole rather than byte
    // by byte (a plain `Vec<u8>` made D-Bus 5× slower here).
    fn put(&self, seq: u64, data: serde_bytes::ByteBuf) -> u64 {
        // SAFETY: `data` holds `data.len()` bytes.
        check(
            unsafe { consume(data.as_ptr(), 0, data.len()) },
            seq,
            data.len(),
        );
        data.len() as u64
    }

    fn echo(&self, data: serde_bytes::ByteBuf) -> serde_bytes::ByteBuf {
        data
    }
}

/// `--dbus-server ADDRESS`: serves `Server` on the bus at ADDRESS until killed.
pub(crate) fn serve(address: &str) -> ! {
    let _c = zbus::blocking::connection::Builder::address(address)
        .unwrap()
        .name(NAME)
        .unwrap()
        .serve_at(PATH, Server)
        .unwrap()
        .build()
        .unwrap();
    loop {
        std::thread::park();
    }
}

/// The bus daemon and the server, killed on drop.
pub(crate) struct Bus {
    daemon: Child,
    server: Child,
    pub(crate) client: zbus::blocking::Connection,
}

impl Drop for Bus {
    fn drop(&mut self) {
        for c in [&mut self.server, &mut self.daemon] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Bus {
    /// A private bus with the server on it, or why there is none.
    pub(crate) fn start() -> Result<Bus, String> {
        let mut daemon = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("no dbus-daemon: {e}"))?;
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(daemon.stdout.take().unwrap()),
            &mut line,
        )
        .map_err(|e| e.to_string())?;
        let address = line.trim().to_owned();
        let server = Command::new(std::env::current_exe().unwrap())
            .args(["--dbus-server", &address])
            .spawn()
            .map_err(|e| e.to_string())?;
        let client = zbus::blocking::connection::Builder::address(address.as_str())
            .and_then(|b| b.build())
            .map_err(|e| e.to_string())?;
        let dbus = zbus::blocking::fdo::DBusProxy::new(&client).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !dbus
            .name_has_owner(NAME.try_into().unwrap())
            .unwrap_or(false)
        {
            if Instant::now() > deadline {
                return Err("the D-Bus bench server did not appear".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(Bus {
            daemon,
            server,
            client,
        })
    }

    fn proxy(&self) -> zbus::blocking::Proxy<'_> {
        zbus::blocking::Proxy::new(&self.client, NAME, PATH, IFACE).unwrap()
    }
}

/// GB/s of `msg`-byte messages, generated here and consumed by the server.
pub(crate) fn dbus_throughput(bus: &Bus, msg: usize) -> f64 {
    let p = bus.proxy();
    let mut m = vec![0u8; msg];
    let n = (DBUS_TOTAL / msg) as u64;
    let t0 = Instant::now();
    for seq in 0..n {
        // SAFETY: `m` holds `msg` bytes.
        unsafe { generate(m.as_mut_ptr(), 0, msg, seq) };
        let got: u64 = p.call("Put", &(seq, serde_bytes::Bytes::new(&m))).unwrap();
        assert_eq!(got, msg as u64);
    }
    DBUS_TOTAL as f64 / t0.elapsed().as_secs_f64() / 1e9
}

/// Round trips (µs) of `msg`-byte messages echoed by the server.
pub(crate) fn dbus_rtt(bus: &Bus, msg: usize, n: usize) -> Vec<f64> {
    let p = bus.proxy();
    let m = vec![0x5au8; msg];
    (0..n)
        .map(|_| {
            let t0 = Instant::now();
            let back: serde_bytes::ByteBuf =
                p.call("Echo", &(serde_bytes::Bytes::new(&m),)).unwrap();
            assert_eq!(back.len(), msg);
            t0.elapsed().as_secs_f64() * 1e6
        })
        .collect()
}
