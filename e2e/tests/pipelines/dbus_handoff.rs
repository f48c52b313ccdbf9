//! The D-Bus hand-off (`examples/dbus-handoff`) on a private session bus: a
//! `dbus-daemon` of the test's own, the camera service, and two clients that each
//! get a connected socket fd from `OpenStream` and receive frames through it, with no
//! socket path anywhere.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use e2e::{KillOnDrop, gst_plugin_dir};

/// A private session bus: the daemon and its address.
fn private_bus() -> (KillOnDrop, String) {
    let mut d = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--print-address=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("dbus-daemon (Debian's dbus-daemon, installed by make deps)");
    let mut line = String::new();
    BufReader::new(d.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line.trim().to_owned();
    assert!(address.starts_with("unix:"), "dbus-daemon said {address:?}");
    (KillOnDrop(d), address)
}

fn example(name: &str, bus: &str, args: &[&str]) -> Child {
    Command::new(gst_plugin_dir().join("examples").join(name))
        .args(args)
        .env("DBUS_SESSION_BUS_ADDRESS", bus)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{name}: {e} (built by cargo test)"))
}

fn finish(mut c: Child, what: &str) -> String {
    let out = e2e::wait_with_output(&mut c, 60, what);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what}: {text}");
    text
}

#[test]
fn clients_get_their_stream_fd_over_a_private_session_bus() {
    let (_daemon, bus) = private_bus();
    let mut service = example("dbus-service", &bus, &[]);
    let mut first = String::new();
    BufReader::new(service.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("ready"), "{first}");
    let _service = KillOnDrop(service);
    let a = example("dbus-client", &bus, &["30"]);
    let b = example("dbus-client", &bus, &["45"]);
    let a = finish(a, "first client");
    let b = finish(b, "second client");
    assert!(a.contains("received 30 frames"), "{a}");
    assert!(b.contains("received 45 frames"), "{b}");
    assert!(a.contains("in order and intact") && b.contains("in order and intact"));
}

#[test]
fn without_the_service_the_client_says_so() {
    let (_daemon, bus) = private_bus();
    let c = example("dbus-client", &bus, &["1"]);
    let out = c.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("org.shmring.Camera"), "{err}");
}
