//! One look at each producer: what it says about itself, within a deadline, every
//! producer on its own thread so that one that never answers delays no other row.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shmring::frame::{Inspection, ProducerStats};

/// Where a producer listens, and how the user named it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    /// What the rows call it: its name in the directory of named producers, or the
    /// path or URI given.
    pub label: String,
    /// Its socket.
    pub path: PathBuf,
}

/// What one look found.
#[derive(Clone, Debug)]
pub struct Look {
    /// The producer looked at.
    pub target: Target,
    /// When the answer came (or the look gave up).
    pub at: Instant,
    /// Its answer, or why there is none (said as the row says it).
    pub answer: Result<Inspection, String>,
}

impl Look {
    /// Its counters, when it sent them.
    pub fn stats(&self) -> Option<&ProducerStats> {
        self.answer.as_ref().ok()?.stats.as_ref()
    }
}

/// The most producers looked at at once (a directory with more lists the first
/// this many, by name).
pub const MAX_TARGETS: usize = 256;

/// Looks at every target, each within `timeout`; the rows in the order of
/// `targets`. Returns within `timeout` and a little, whatever the producers do.
pub fn look_all(targets: &[Target], timeout: Duration) -> Vec<Look> {
    let handles: Vec<_> = targets
        .iter()
        .take(MAX_TARGETS)
        .cloned()
        .map(|t| {
            std::thread::Builder::new()
                .name("shmring-look".into())
                .spawn(move || look(t, timeout))
        })
        .collect();
    handles
        .into_iter()
        .zip(targets)
        .map(|(h, t)| match h {
            Ok(h) => h.join().unwrap_or_else(|_| Look {
                target: t.clone(),
                at: Instant::now(),
                answer: Err("the look panicked".into()),
            }),
            Err(e) => Look {
                target: t.clone(),
                at: Instant::now(),
                answer: Err(format!("cannot start a thread: {e}")),
            },
        })
        .collect()
}

/// One look at `t`.
pub fn look(t: Target, timeout: Duration) -> Look {
    let answer = shmring::Consumer::inspect(&t.path, timeout).map_err(|e| why(&e));
    Look {
        target: t,
        at: Instant::now(),
        answer,
    }
}

/// How a row says a look failed.
fn why(e: &shmring::ConnectError) -> String {
    match e {
        shmring::ConnectError::Timeout => "no answer within the deadline".into(),
        shmring::ConnectError::NoProducer { .. } => "nobody listening".into(),
        e => e.to_string(),
    }
}

/// The named producers in `dir`: sockets with a valid name, sorted by name.
pub fn named_in(dir: &Path) -> Vec<Target> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<Target> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_socket()))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            gstshmring::names::check_name(&name).ok()?;
            Some(Target {
                label: name,
                path: e.path(),
            })
        })
        .collect();
    found.sort();
    found.truncate(MAX_TARGETS);
    found
}

/// A target the user gave: a producer name, a socket path, or a `shmring://` URI.
pub fn given(arg: &str) -> Result<Target, String> {
    use gstshmring::names;
    let path = if arg.starts_with(&format!("{}:", names::SCHEME)) {
        match names::parse_uri(arg).map_err(|e| e.to_string())? {
            names::Target::Path(p) => p,
            names::Target::Name(n) => names::connect_path(&n).map_err(|e| e.to_string())?,
        }
    } else if arg.contains('/') {
        arg.to_string()
    } else {
        names::check_name(arg).map_err(|e| e.to_string())?;
        names::connect_path(arg).map_err(|e| e.to_string())?
    };
    Ok(Target {
        label: arg.to_string(),
        path: PathBuf::from(path),
    })
}
