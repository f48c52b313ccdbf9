//! The examples, run as a user runs them: the sandboxed encoder writes a playable
//! H.264 MP4 and cannot open any other file nor open a network socket; two Python
//! subscribers, one joining late, hear the same published audio.

use std::process::Command;

use e2e::gst_plugin_dir;

/// The Landlock ABI of this kernel (0: none).
fn landlock_abi() -> i64 {
    // SAFETY: landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) only
    // returns the ABI version (or -1); it reads no memory.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    v.max(0)
}

#[test]
fn sandboxed_encoder_writes_h264_mp4_and_can_open_nothing_else() {
    let dir = std::env::temp_dir().join(format!("shmring-sandbox-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out.mp4");
    // A file beside the output, which the encoder must not read either.
    let neighbour = dir.join("neighbour.txt");
    std::fs::write(&neighbour, "private").unwrap();
    let capture = gst_plugin_dir().join("examples/sandboxed-capture");
    let run = Command::new(&capture)
        .args([
            "60",
            out.to_str().unwrap(),
            "/etc/hostname",
            neighbour.to_str().unwrap(),
        ])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", capture.display()));
    let said = String::from_utf8_lossy(&run.stdout).into_owned();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{said}\n{err}");
    assert!(said.contains("encoder: encoded 60 frames"), "{said}");
    assert!(
        said.contains("capture: sent 60 frames to the encoder (zero-copy 60, copied 0)"),
        "{said}"
    );
    assert!(said.contains("network socket: denied"), "{said}");
    if landlock_abi() >= 4 {
        assert!(said.contains("sandbox: Landlock enforced"), "{said}");
        assert!(said.contains("open /etc/hostname: denied"), "{said}");
        assert!(
            said.contains(&format!("open {}: denied", neighbour.display())),
            "{said}"
        );
    } else {
        assert!(
            said.contains("sandbox: this kernel has no Landlock"),
            "{said}"
        );
    }
    let info = Command::new("gst-discoverer-1.0")
        .arg(&out)
        .output()
        .expect("gst-discoverer-1.0 (gstreamer1.0-plugins-base-apps) installed");
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("container #0: Quicktime"), "{info}");
    assert!(info.contains("video #1: H.264"), "{info}");
    assert!(
        info.contains("Width: 640") && info.contains("Height: 360"),
        "{info}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn audio_between_apps_two_subscribers_one_late_hear_the_same_stream() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/audio-between-apps/run.sh"
    );
    let run = Command::new(script)
        .arg("4")
        .env("GST_PLUGIN_PATH", gst_plugin_dir())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let levels = |who: &str| -> Vec<String> {
        said.lines()
            .filter(|l| l.starts_with(&format!("{who}: t=")))
            .map(|l| l.split_once(" rms ").unwrap().1.to_owned())
            .collect()
    };
    let (first, late) = (levels("first"), levels("late"));
    assert_eq!((first.len(), late.len()), (40, 20), "{said}");
    // A steady tone: every level of both is the same (the first ones included).
    for l in first.iter().chain(&late) {
        assert_eq!(l, "-9.0 dB peak -6.0 dB (2 channels)", "{said}");
    }
    let caps = |who: &str| {
        said.lines()
            .find(|l| l.starts_with(&format!("{who}: caps ")))
            .map(|l| l.split_once("caps ").unwrap().1.to_owned())
    };
    assert_eq!(caps("first"), caps("late"));
    assert!(
        caps("late")
            .unwrap()
            .contains("rate=(int)48000, channels=(int)2"),
        "{said}"
    );
}
