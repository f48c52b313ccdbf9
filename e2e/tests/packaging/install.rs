//! `make install` / `make uninstall` into a user prefix: GStreamer then finds the
//! plugin by itself (no `GST_PLUGIN_PATH`), and no longer after uninstalling.

use std::path::Path;
use std::process::Command;

fn inspect(home: &Path) -> std::process::Output {
    Command::new("gst-inspect-1.0")
        .arg("shmring")
        .env("HOME", home)
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_CACHE_HOME")
        .env_remove("GST_PLUGIN_PATH")
        .env_remove("GST_REGISTRY")
        .output()
        .expect("gst-inspect-1.0 (gstreamer1.0-tools) installed")
}

fn make(target: &str, prefix: &Path) -> std::process::Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    Command::new("make")
        .arg("--no-print-directory")
        .arg(target)
        .arg(format!("PREFIX={}", prefix.display()))
        .arg("PROFILE=dev")
        // Built already (by this test run); a nested cargo would wait for its lock.
        .arg("SKIP_BUILD=1")
        .current_dir(root)
        .output()
        .expect("make")
}

#[test]
fn make_install_into_a_user_prefix_is_found_without_gst_plugin_path() {
    let home = std::env::temp_dir().join(format!("shmring-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    let prefix = home.join(".local");
    assert!(!inspect(&home).status.success(), "found before installing");
    let out = make("install", &prefix);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lib = prefix.join("share/gstreamer-1.0/plugins/libgstshmring.so");
    assert!(lib.exists(), "{} missing", lib.display());
    let tool = prefix.join("bin/shmring");
    let out = Command::new(&tool)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", tool.display()));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("shmring "),
        "{out:?}"
    );
    let found = inspect(&home);
    let text = String::from_utf8_lossy(&found.stdout);
    assert!(found.status.success(), "{text}");
    assert!(
        text.contains("shmringsink") && text.contains("shmringsrc"),
        "{text}"
    );
    let out = make("uninstall", &prefix);
    assert!(out.status.success());
    assert!(!lib.exists());
    assert!(!tool.exists());
    assert!(
        !inspect(&home).status.success(),
        "still found after uninstalling"
    );
    let _ = std::fs::remove_dir_all(&home);
}
