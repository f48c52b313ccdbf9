//! `make deb`: a Debian package that puts the plugin in GStreamer's plugin
//! directory. Its contents load (extracted, GStreamer pointed at them); on a fresh
//! CI root (root, `CI=true`) it is installed for real with `apt-get`, found by
//! `gst-inspect-1.0 shmring` with no help, and removed again.
//!
//! Its own test binary: installing system-wide must not overlap the tests that check
//! the plugin is not found before `make install`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run(c: &mut Command) -> Output {
    c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"))
}

/// `gst-inspect-1.0 shmring` with GStreamer's own search only (`system`: the plugin
/// directory to search instead of the system's).
fn inspect(system: Option<&Path>, scratch: &Path) -> Output {
    let mut c = Command::new("gst-inspect-1.0");
    c.arg("shmring")
        .env("HOME", scratch)
        .env("GST_REGISTRY", scratch.join("registry.bin"))
        .env_remove("GST_PLUGIN_PATH")
        .env_remove("XDG_DATA_HOME");
    if let Some(dir) = system {
        c.env("GST_PLUGIN_SYSTEM_PATH", dir);
    }
    run(&mut c)
}

fn finds_all_three(o: &Output) {
    let t = text(o);
    assert!(o.status.success(), "{t}");
    for f in ["shmringsink", "shmringsrc", "shmringdeviceprovider"] {
        assert!(t.contains(f), "{f} missing: {t}");
    }
}

#[test]
fn make_deb_builds_a_package_that_installs_the_plugin() {
    let scratch = std::env::temp_dir().join(format!("shmring-deb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let out = run(Command::new("make")
        .args(["--no-print-directory", "deb", "PROFILE=dev", "SKIP_BUILD=1"])
        .current_dir(root()));
    assert!(out.status.success(), "{}", text(&out));
    let built = text(&out);
    let deb = built
        .lines()
        .find_map(|l| l.strip_prefix("built ").and_then(|l| l.split(':').next()))
        .map(|p| root().join(p))
        .unwrap_or_else(|| panic!("make deb named no package: {built}"));
    assert!(deb.exists(), "{}", deb.display());

    let info = text(&run(Command::new("dpkg-deb").arg("--info").arg(&deb)));
    assert!(info.contains("Package: gstreamer1.0-shmring"), "{info}");
    assert!(info.contains("libgstreamer1.0-0 (>= 1.22)"), "{info}");
    let plugins = String::from_utf8(
        run(Command::new("pkg-config").args(["--variable=pluginsdir", "gstreamer-1.0"])).stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    let list = text(&run(Command::new("dpkg-deb").arg("--contents").arg(&deb)));
    assert!(
        list.contains(&format!(".{plugins}/libgstshmring.so")),
        "{list}"
    );
    assert!(list.contains("./usr/bin/shmring"), "{list}");

    // Its contents load where the package puts them.
    let unpacked = scratch.join("root");
    let out = run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked));
    assert!(out.status.success(), "{}", text(&out));
    let dir = unpacked.join(plugins.trim_start_matches('/'));
    finds_all_three(&inspect(Some(&dir), &scratch));

    // For real, on a fresh CI root: installed with apt-get, found, removed.
    // SAFETY: geteuid has no arguments and cannot fail.
    let root_user = unsafe { libc::geteuid() } == 0;
    if root_user && std::env::var("CI").is_ok_and(|v| v == "true") {
        assert!(
            !inspect(None, &scratch).status.success(),
            "the plugin is installed already"
        );
        let out = run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .arg(&deb)
            .env("DEBIAN_FRONTEND", "noninteractive"));
        assert!(out.status.success(), "{}", text(&out));
        finds_all_three(&inspect(None, &scratch));
        let out = run(Command::new("dpkg").args(["--remove", "gstreamer1.0-shmring"]));
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            !inspect(None, &scratch).status.success(),
            "still found after removal"
        );
    } else {
        println!("not root on a CI root: the package was checked unpacked, not installed");
    }
    let _ = std::fs::remove_dir_all(&scratch);
}
