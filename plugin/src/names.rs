//! Named producers and `shmring://` URIs.
//!
//! A producer started with `producer-name=cam` serves the socket `cam` in the user's
//! private directory of producers: `$XDG_RUNTIME_DIR/shmring/` (made 0700 when
//! missing), or `/tmp/shmring-$UID/` where the session has no runtime directory. A
//! consumer with the same `producer-name` (or the URI `shmring://cam`) connects to
//! it, and the device provider lists what is served there.
//!
//! The directory is trusted only if it is a real directory (not a symbolic link),
//! owned by this user and closed to everyone else: in `/tmp`, another user could
//! have made it first to serve (or to listen for) our streams.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The URI scheme of both elements.
pub const SCHEME: &str = "shmring";

/// The longest producer name.
pub const MAX_NAME: usize = 64;

/// Why a producer name, the directory of producers or a `shmring://` URI cannot be
/// used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameError {
    /// A name of 0 or more than [`MAX_NAME`] characters.
    Length {
        /// The name.
        name: String,
    },
    /// A name that starts with a dot.
    Dot {
        /// The name.
        name: String,
    },
    /// A name with a character other than `A-Z a-z 0-9 _ - .`.
    Char {
        /// The name.
        name: String,
        /// The character.
        c: char,
    },
    /// The directory cannot be read or made.
    DirectoryIo {
        /// The directory.
        dir: PathBuf,
        /// What the system said.
        error: String,
    },
    /// The directory is not one (a link, a file).
    NotADirectory {
        /// The directory.
        dir: PathBuf,
    },
    /// The directory is another user's.
    NotOurs {
        /// The directory.
        dir: PathBuf,
        /// Its owner.
        uid: u32,
        /// This user.
        me: u32,
    },
    /// The directory is open to others.
    OpenToOthers {
        /// The directory.
        dir: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A URI that is not a `shmring://` one, or says nothing usable.
    Uri {
        /// The URI.
        uri: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A URI that names a producer by a name that is not one.
    UriName {
        /// The URI.
        uri: String,
        /// Why the name is not one.
        name: Box<NameError>,
    },
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameError::Length { name } => write!(
                f,
                "producer name {name:?}: 1 to {MAX_NAME} characters, not {}",
                name.len()
            ),
            NameError::Dot { name } => write!(f, "producer name {name:?} starts with a dot"),
            NameError::Char { name, c } => write!(
                f,
                "producer name {name:?} has {c:?}: only letters, digits, '_', '-' and '.'"
            ),
            NameError::DirectoryIo { dir, error } => write!(f, "{}: {error}", dir.display()),
            NameError::NotADirectory { dir } => write!(f, "{} is not a directory", dir.display()),
            NameError::NotOurs { dir, uid, me } => write!(
                f,
                "{} belongs to uid {uid}, not to this user ({me})",
                dir.display()
            ),
            NameError::OpenToOthers { dir, mode } => write!(
                f,
                "{} is open to others (mode {mode:o}; 700 expected)",
                dir.display()
            ),
            NameError::Uri { uri, why } => write!(f, "{uri:?}: {why}"),
            NameError::UriName { uri, name } => write!(f, "{uri:?}: {name}"),
        }
    }
}

impl std::error::Error for NameError {}

/// Checks a producer name: 1 to 64 of `A-Z a-z 0-9 _ - .`, not starting with a dot
/// (no path, no hidden file, nothing a shell or a URI must quote).
pub fn check_name(name: &str) -> Result<(), NameError> {
    let name_ = || name.to_owned();
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(NameError::Length { name: name_() });
    }
    if name.starts_with('.') {
        return Err(NameError::Dot { name: name_() });
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        Some(c) => Err(NameError::Char { name: name_(), c }),
        None => Ok(()),
    }
}

/// This user's directory of named producers (not made, not checked).
pub fn directory() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(d) if d.is_absolute() => d.join("shmring"),
        // SAFETY: geteuid has no arguments and cannot fail.
        _ => PathBuf::from(format!("/tmp/shmring-{}", unsafe { libc::geteuid() })),
    }
}

/// Checks that `dir` is a directory of this user's, closed to others.
pub fn check_directory(dir: &Path) -> Result<(), NameError> {
    let d = || dir.to_path_buf();
    let m = std::fs::symlink_metadata(dir).map_err(|e| NameError::DirectoryIo {
        dir: d(),
        error: e.to_string(),
    })?;
    if !m.file_type().is_dir() {
        return Err(NameError::NotADirectory { dir: d() });
    }
    // SAFETY: geteuid has no arguments and cannot fail.
    let me = unsafe { libc::geteuid() };
    if m.uid() != me {
        return Err(NameError::NotOurs {
            dir: d(),
            uid: m.uid(),
            me,
        });
    }
    if m.permissions().mode() & 0o077 != 0 {
        return Err(NameError::OpenToOthers {
            dir: d(),
            mode: m.permissions().mode() & 0o777,
        });
    }
    Ok(())
}

/// This user's directory of named producers, made (0700) if missing, and checked.
pub fn ensure_directory() -> Result<PathBuf, NameError> {
    let dir = directory();
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(NameError::DirectoryIo {
                dir,
                error: format!("cannot make it: {e}"),
            });
        }
    }
    check_directory(&dir)?;
    Ok(dir)
}

/// The socket a producer named `name` serves on, its directory made if missing.
pub fn serve_path(name: &str) -> Result<String, NameError> {
    check_name(name)?;
    let p = ensure_directory()?.join(name);
    Ok(p.to_string_lossy().into_owned())
}

/// The socket of the producer named `name`, for a consumer: the directory must be
/// this user's (a consumer never makes it).
pub fn connect_path(name: &str) -> Result<String, NameError> {
    check_name(name)?;
    let dir = directory();
    // Missing: no producer yet (connecting says so, and a reconnecting consumer
    // waits); there but not ours: refuse.
    if dir.exists() {
        check_directory(&dir)?;
    }
    Ok(dir.join(name).to_string_lossy().into_owned())
}

/// What a `shmring://` URI designates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `shmring:///abs/path`: a socket path.
    Path(String),
    /// `shmring://name`: a named producer.
    Name(String),
}

impl Target {
    /// The URI of this target.
    pub fn uri(&self) -> String {
        match self {
            Target::Path(p) => format!("{SCHEME}://{}", escape_path(p)),
            Target::Name(n) => format!("{SCHEME}://{n}"),
        }
    }
}

/// The URI of an element with these `socket-path` and `producer-name` (the name
/// first: it wins where both are set, and start refuses that).
pub fn uri_of(socket_path: Option<&str>, producer_name: Option<&str>) -> Option<String> {
    match (producer_name, socket_path) {
        (Some(n), _) => Some(Target::Name(n.to_string()).uri()),
        (None, Some(p)) => Some(Target::Path(p.to_string()).uri()),
        (None, None) => None,
    }
}

/// What `GstURIHandler::set_uri` of either element sets: the target of `uri`, in the
/// NULL or READY state only (`GST_URI_ERROR_BAD_STATE`, `..._BAD_URI` naming the
/// fault otherwise).
pub(crate) fn uri_target(element: &gst::Element, uri: &str) -> Result<Target, gst::glib::Error> {
    use gst::prelude::*;
    if element.current_state() > gst::State::Ready {
        return Err(gst::glib::Error::new(
            gst::URIError::BadState,
            "the URI can only be set in the NULL or READY state",
        ));
    }
    parse_uri(uri).map_err(|e| gst::glib::Error::new(gst::URIError::BadUri, &e.to_string()))
}

/// Parses `shmring:///abs/path` (percent-escapes decoded) or `shmring://name`.
pub fn parse_uri(uri: &str) -> Result<Target, NameError> {
    let bad = |why| NameError::Uri {
        uri: uri.to_owned(),
        why,
    };
    let rest = uri
        .split_once("://")
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(SCHEME))
        .map(|(_, rest)| rest)
        .ok_or(bad("not a shmring:// URI"))?;
    if rest.contains(['?', '#']) {
        return Err(bad("a shmring URI has no query or fragment"));
    }
    if rest.starts_with('/') {
        let path = unescape(rest).ok_or(bad("bad percent-escape"))?;
        if path.len() < 2 || path.contains('\0') {
            return Err(bad("no socket path"));
        }
        return Ok(Target::Path(path));
    }
    let name = rest.strip_suffix('/').unwrap_or(rest);
    check_name(name).map_err(|e| NameError::UriName {
        uri: uri.to_owned(),
        name: Box::new(e),
    })?;
    Ok(Target::Name(name.to_string()))
}

fn escape_path(p: &str) -> String {
    let mut s = String::with_capacity(p.len());
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["cam", "cam-1", "a.b_c", "X9", &"n".repeat(64)] {
            check_name(ok).unwrap();
        }
        let long = "n".repeat(65);
        for (bad, char) in [
            ("", None),
            (long.as_str(), None),
            ("a/b", Some('/')),
            ("c m", Some(' ')),
            ("cäm", Some('ä')),
        ] {
            let e = check_name(bad).unwrap_err();
            match char {
                None => assert_eq!(e, NameError::Length { name: bad.into() }),
                Some(c) => assert_eq!(
                    e,
                    NameError::Char {
                        name: bad.into(),
                        c
                    }
                ),
            }
        }
        for dotted in [".cam", "../x"] {
            assert_eq!(
                check_name(dotted),
                Err(NameError::Dot {
                    name: dotted.into()
                })
            );
        }
    }

    #[test]
    fn uris() {
        assert_eq!(parse_uri("shmring://cam"), Ok(Target::Name("cam".into())));
        assert_eq!(parse_uri("SHMRING://cam/"), Ok(Target::Name("cam".into())));
        assert_eq!(
            parse_uri("shmring:///run/user/1000/my%20cam"),
            Ok(Target::Path("/run/user/1000/my cam".into()))
        );
        for bad in [
            "file:///x",
            "shmring:/x",
            "shmring://",
            "shmring:///",
            "shmring://a/b",
            "shmring://cam?x=1",
            "shmring:///x%zz",
            "shmring:///x%00",
        ] {
            assert!(parse_uri(bad).is_err(), "{bad}");
        }
        for t in [
            Target::Name("cam".into()),
            Target::Path("/tmp/a b/%x".into()),
        ] {
            assert_eq!(parse_uri(&t.uri()), Ok(t.clone()));
        }
    }

    #[test]
    fn directory_must_be_ours_and_closed() {
        let base = std::env::temp_dir().join(format!("shmring-names-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let open = base.join("open");
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&open)
            .unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(
            check_directory(&open).unwrap_err(),
            NameError::OpenToOthers { mode: 0o755, .. }
        ));
        let closed = base.join("closed");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&closed)
            .unwrap();
        check_directory(&closed).unwrap();
        let link = base.join("link");
        std::os::unix::fs::symlink(&closed, &link).unwrap();
        assert!(matches!(
            check_directory(&link).unwrap_err(),
            NameError::NotADirectory { .. }
        ));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
