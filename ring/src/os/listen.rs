//! Owned `SOCK_SEQPACKET` listening sockets: stale-socket replacement, file mode,
//! peer credentials.
//!
//! A producer that crashed leaves its socket file behind. [`SeqpacketListener::bind`]
//! tells a stale file (nobody accepts on it: `ECONNREFUSED`) from a live one (a
//! connect succeeds): the stale one is replaced, the live one is never stolen, and no
//! other path is ever bound silently. The new socket is created in a private
//! directory beside the target, given its mode there, and renamed into place, so it
//! never exists at the target path with a wider mode than asked for.
//!
//! The frame channel's [`Producer::bind`](crate::Producer::bind) listens with it.

use std::ffi::CString;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use crate::os::doorbell::{Waker, poll_until, pollfd};
use crate::error::{BindError, ConnectError, Error, OsError, ProtocolFault, Result};

/// A listening unix `SOCK_SEQPACKET` socket bound to a path it owns (and unlinks on drop).
#[derive(Debug)]
pub struct SeqpacketListener {
    fd: OwnedFd,
    path: PathBuf,
    /// Device and inode of the socket file we put in place.
    id: (u64, u64),
}

/// The credentials of a connected peer (`SO_PEERCRED`), as the kernel recorded them
/// at connect time: the peer cannot forge them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCred {
    /// Process id.
    pub pid: i32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

fn sockaddr(path: &Path) -> Result<(libc::sockaddr_un, libc::socklen_t), BindError> {
    // SAFETY: an all-zero sockaddr_un is valid.
    let mut a: libc::sockaddr_un = unsafe { zeroed() };
    a.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let b = path.as_os_str().as_bytes();
    if b.is_empty() || b.len() >= a.sun_path.len() {
        return Err(bad_path(
            path,
            format!("empty or longer than {} bytes", a.sun_path.len() - 1),
        ));
    }
    for (d, s) in a.sun_path.iter_mut().zip(b) {
        *d = *s as libc::c_char;
    }
    let len = (size_of::<libc::sa_family_t>() + b.len() + 1) as libc::socklen_t;
    Ok((a, len))
}

fn seqpacket_socket() -> Result<OwnedFd, OsError> {
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(OsError::last("socket"));
    }
    // SAFETY: a fresh fd nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// How long [`SeqpacketListener::bind`] waits for another producer's lock on the
/// path (held only while it probes and replaces a socket: milliseconds).
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Connects a new `SOCK_SEQPACKET` socket to `path` without ever blocking in
/// `connect(2)`: a listener whose backlog is full (one that never accepts) is tried
/// again every few milliseconds until `deadline` ([`ConnectError::Unresponsive`];
/// `None`: one try) or until `waker` is woken ([`ConnectError::Interrupted`]). A
/// path no socket address can hold is [`ConnectError::Invalid`].
pub fn connect(
    path: &Path,
    deadline: Option<Instant>,
    waker: Option<&Waker>,
) -> Result<OwnedFd, ConnectError> {
    let (a, len) = sockaddr(path).map_err(|e| ConnectError::Invalid(e.to_string()))?;
    let fd = seqpacket_socket()?;
    set_nonblocking(fd.as_fd())?;
    let start = Instant::now();
    loop {
        // SAFETY: `a` is a valid sockaddr_un of `len` bytes.
        let r =
            unsafe { libc::connect(fd.as_raw_fd(), (&a as *const libc::sockaddr_un).cast(), len) };
        if r == 0 {
            // Connected: blocking again, as callers expect a fresh socket to be (the
            // crate's own sends and receives say MSG_DONTWAIT anyway).
            set_blocking(fd.as_fd())?;
            return Ok(fd);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            // A unix socket's listener with a full backlog: no poll tells when it
            // has room, so look again shortly.
            Some(libc::EAGAIN) => {}
            _ => {
                return Err(ConnectError::Os {
                    op: "connect",
                    source: e,
                });
            }
        }
        let now = Instant::now();
        if deadline.is_none_or(|d| now >= d) {
            return Err(ConnectError::Unresponsive {
                what: format!("connect to {} (its backlog is full)", path.display()),
                waited: now - start,
            });
        }
        let retry = (now + Duration::from_millis(5)).min(deadline.expect("checked"));
        match waker {
            Some(w) => {
                let mut p = [pollfd(w.as_fd(), libc::POLLIN)];
                poll_until(&mut p, Some(retry))?;
                if w.take() {
                    return Err(ConnectError::Interrupted);
                }
            }
            None => std::thread::sleep(retry.saturating_duration_since(now)),
        }
    }
}

/// Sets `O_NONBLOCK` on `fd`.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> std::result::Result<(), OsError> {
    set_flag(fd, true)
}

fn set_blocking(fd: BorrowedFd<'_>) -> std::result::Result<(), OsError> {
    set_flag(fd, false)
}

fn set_flag(fd: BorrowedFd<'_>, nonblocking: bool) -> std::result::Result<(), OsError> {
    // SAFETY: fcntl on a valid fd with integer arguments only.
    let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    let want = if nonblocking {
        fl | libc::O_NONBLOCK
    } else {
        fl & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    if fl < 0 || unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, want) } < 0 {
        return Err(OsError::last("fcntl(O_NONBLOCK)"));
    }
    Ok(())
}

impl SeqpacketListener {
    /// Binds and listens on `path` with file mode `mode` (e.g. `0o600`), replacing a
    /// stale socket left by a dead producer. A path where someone still accepts
    /// connections is an error naming it.
    pub fn bind(path: &Path, mode: u32) -> Result<SeqpacketListener, BindError> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .ok_or_else(|| bad_path(path, "has no file name"))?;
        // Producers racing for the same path (both seeing a stale socket) take turns:
        // the first replaces it, the next finds a live one.
        let _lock = PathLock::take(dir, name)?;
        match std::fs::symlink_metadata(path) {
            Ok(md) if !std::os::unix::fs::FileTypeExt::is_socket(&md.file_type()) => {
                return Err(bad_path(path, "exists and is not a socket"));
            }
            // One try, no wait: a listener that never accepts is alive too.
            Ok(_) => match connect(path, None, None) {
                Ok(_) | Err(ConnectError::Unresponsive { .. }) => {
                    return Err(BindError::PathInUse {
                        path: path.to_path_buf(),
                    });
                }
                Err(ConnectError::Os { source, .. })
                    if source.raw_os_error() == Some(libc::ECONNREFUSED) =>
                {
                    // Stale: replaced by the rename below.
                }
                Err(e) => {
                    return Err(bad_path(
                        path,
                        format!("exists and cannot be probed: {e}"),
                    ));
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(BindError::Os {
                    op: "stat(socket path)",
                    source: e,
                });
            }
        }
        // Build the socket in a private directory beside the target, then rename.
        let tmp_dir = private_dir(dir, name)?;
        let tmp = tmp_dir.join("s");
        let r = (|| -> Result<OwnedFd, BindError> {
            let fd = seqpacket_socket()?;
            let (a, len) = sockaddr(&tmp)?;
            // SAFETY: `a` is a valid sockaddr_un of `len` bytes.
            if unsafe { libc::bind(fd.as_raw_fd(), (&a as *const libc::sockaddr_un).cast(), len) }
                < 0
            {
                return Err(OsError::last("bind").into());
            }
            std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .map_err(|e| BindError::Os {
                    op: "chmod(socket)",
                    source: e,
                })?;
            // SAFETY: plain listen(2) on our socket.
            if unsafe { libc::listen(fd.as_raw_fd(), 64) } < 0 {
                return Err(OsError::last("listen").into());
            }
            std::fs::rename(&tmp, path).map_err(|e| BindError::Os {
                op: "rename(socket into place)",
                source: e,
            })?;
            Ok(fd)
        })();
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_dir(&tmp_dir);
        let fd = r?;
        let md = std::fs::symlink_metadata(path).map_err(|e| BindError::Os {
            op: "stat(socket path)",
            source: e,
        })?;
        Ok(SeqpacketListener {
            fd,
            path: path.to_path_buf(),
            id: (md.dev(), md.ino()),
        })
    }

    /// Accepts one connection (blocking unless the socket was made non-blocking).
    pub fn accept(&self) -> Result<OwnedFd> {
        loop {
            // SAFETY: accept4 with null address pointers is valid.
            let fd = unsafe {
                libc::accept4(
                    self.fd.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC,
                )
            };
            if fd >= 0 {
                // SAFETY: a fresh fd nothing else owns.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(Error::Os {
                    op: "accept",
                    source: e,
                });
            }
        }
    }

    /// The path it listens on.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AsFd for SeqpacketListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for SeqpacketListener {
    fn drop(&mut self) {
        // Only our own socket file: never one that replaced it.
        if let Ok(md) = std::fs::symlink_metadata(&self.path) {
            if (md.dev(), md.ino()) == self.id {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// An exclusive `flock` on `.<name>.lock` beside the socket, held while a producer
/// probes and replaces the socket file. The lock file stays (removing it would
/// reopen the race it closes).
struct PathLock {
    /// Held for its `flock`; closing it releases the lock.
    _fd: OwnedFd,
}

impl PathLock {
    fn take(dir: &Path, name: &std::ffi::OsStr) -> Result<PathLock, BindError> {
        let p = dir.join(format!(".{}.lock", name.to_string_lossy()));
        let c = CString::new(p.as_os_str().as_bytes())
            .map_err(|_| bad_path(&p, "contains NUL"))?;
        // SAFETY: `c` is a valid NUL-terminated path; open returns a fresh fd or -1.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                0o600,
            )
        };
        if fd < 0 {
            return Err(OsError::last("open(socket lock file)").into());
        }
        // SAFETY: a fresh fd nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // A lock file somebody else made (in a directory others may write) is theirs
        // to hold forever: only one of our own is waited for.
        let md = std::fs::File::from(fd.try_clone().map_err(|e| BindError::Os {
            op: "dup(socket lock file)",
            source: e,
        })?)
        .metadata()
        .map_err(|e| BindError::Os {
            op: "fstat(socket lock file)",
            source: e,
        })?;
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if md.uid() != me {
            return Err(bad_path(
                &p,
                format!(
                    "lock file belongs to uid {}, not to this user (uid {me})",
                    md.uid()
                ),
            ));
        }
        let start = Instant::now();
        loop {
            // SAFETY: flock on our own fd.
            if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(PathLock { _fd: fd });
            }
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) if start.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Some(libc::EWOULDBLOCK) => {
                    return Err(BindError::Busy {
                        what: format!("lock {} (held by another process)", p.display()),
                        waited: start.elapsed(),
                    });
                }
                _ => return Err(OsError::last("flock(socket lock file)").into()),
            }
        }
    }
}

fn private_dir(dir: &Path, name: &std::ffi::OsStr) -> Result<PathBuf, BindError> {
    for n in 0..100u32 {
        let p = dir.join(format!(
            ".{}.{}.{n}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let c = CString::new(p.as_os_str().as_bytes())
            .map_err(|_| bad_path(&p, "contains NUL"))?;
        // SAFETY: `c` is a valid NUL-terminated path.
        if unsafe { libc::mkdir(c.as_ptr(), 0o700) } == 0 {
            return Ok(p);
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
            return Err(OsError::last("mkdir(private socket dir)").into());
        }
    }
    Err(bad_path(dir, "cannot make a private directory in it"))
}

fn bad_path(path: impl Into<PathBuf>, reason: impl Into<String>) -> BindError {
    BindError::BadPath {
        path: path.into(),
        reason: reason.into(),
    }
}

/// The credentials of the peer of a connected unix socket.
pub fn peer_cred(sock: BorrowedFd<'_>) -> Result<PeerCred> {
    // SAFETY: an all-zero ucred is valid.
    let mut c: libc::ucred = unsafe { zeroed() };
    let mut l = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `c`/`l` are valid out-pointers of the sizes SO_PEERCRED expects.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut c as *mut libc::ucred).cast(),
            &mut l,
        )
    };
    if r < 0 {
        return Err(Error::last_os("getsockopt(SO_PEERCRED)"));
    }
    Ok(PeerCred {
        pid: c.pid,
        uid: c.uid,
        gid: c.gid,
    })
}

/// Checks a peer's uid against an allow-list (an empty list allows everyone the
/// socket's file mode lets in).
pub fn check_allowed(cred: PeerCred, allowed_uids: &[u32]) -> Result<()> {
    if allowed_uids.is_empty() || allowed_uids.contains(&cred.uid) {
        Ok(())
    } else {
        Err(ProtocolFault::UidNotAllowed {
            uid: cred.uid,
            pid: cred.pid,
            allowed: allowed_uids.to_vec(),
        }
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    fn path(tag: &str) -> PathBuf {
        let p =
            std::env::temp_dir().join(format!("shmring-listen-{}-{tag}.sock", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn socket_gets_the_requested_mode() {
        let p = path("mode");
        let l = SeqpacketListener::bind(&p, 0o600).unwrap();
        let md = std::fs::metadata(l.path()).unwrap();
        assert!(md.file_type().is_socket());
        assert_eq!(md.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn stale_socket_of_a_dead_producer_is_replaced() {
        let p = path("stale");
        let l = SeqpacketListener::bind(&p, 0o600).unwrap();
        // Simulate a crash: the socket closes, the file stays.
        // SAFETY: test code; closes the listener's own fd, then forgets the listener so
        // that neither the fd is closed twice nor the file unlinked.
        unsafe { libc::close(l.fd.as_raw_fd()) };
        std::mem::forget(l);
        assert!(p.exists());
        let l2 = SeqpacketListener::bind(&p, 0o600).unwrap();
        let c = connect(&p, None, None).unwrap();
        let s = l2.accept().unwrap();
        assert_eq!(peer_cred(s.as_fd()).unwrap().pid, std::process::id() as i32);
        drop(c);
    }

    #[test]
    fn live_socket_is_never_stolen() {
        let p = path("live");
        let _l = SeqpacketListener::bind(&p, 0o600).unwrap();
        let e = SeqpacketListener::bind(&p, 0o600).unwrap_err();
        assert!(matches!(&e, BindError::PathInUse { path } if *path == p), "{e}");
        assert_eq!(
            e.to_string(),
            format!("socket path {} is in use by a live producer", p.display())
        );
    }

    #[test]
    fn producers_racing_for_a_stale_path_take_turns() {
        let p = path("race");
        let l = SeqpacketListener::bind(&p, 0o600).unwrap();
        // SAFETY: test code; as in the stale test above.
        unsafe { libc::close(l.fd.as_raw_fd()) };
        std::mem::forget(l);
        let winners: Vec<SeqpacketListener> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| SeqpacketListener::bind(&p, 0o600)))
                .collect();
            hs.into_iter()
                .filter_map(|h| h.join().unwrap().ok())
                .collect()
        });
        assert_eq!(winners.len(), 1, "exactly one producer owns the path");
        let c = connect(&p, None, None).unwrap();
        winners[0].accept().unwrap();
        drop(c);
    }

    #[test]
    fn dropping_a_listener_leaves_a_replacement_alone() {
        let p = path("replaced");
        let old = SeqpacketListener::bind(&p, 0o600).unwrap();
        std::fs::remove_file(&p).unwrap();
        let new = SeqpacketListener::bind(&p, 0o600).unwrap();
        drop(old);
        assert!(
            p.exists(),
            "the old listener removed its successor's socket"
        );
        drop(new);
        assert!(!p.exists());
    }

    #[test]
    fn a_regular_file_at_the_path_is_not_replaced() {
        let p = path("file");
        std::fs::write(&p, b"important").unwrap();
        let e = SeqpacketListener::bind(&p, 0o600).unwrap_err();
        assert!(
            e.to_string().contains("is not a socket") || e.to_string().contains("cannot be probed"),
            "{e}"
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"important");
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn allow_list_admits_listed_uids_only() {
        let me = PeerCred {
            pid: 1,
            uid: 1000,
            gid: 1000,
        };
        assert!(check_allowed(me, &[]).is_ok());
        assert!(check_allowed(me, &[0, 1000]).is_ok());
        let e = check_allowed(me, &[0]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "protocol violation: peer uid 1000 (pid 1) is not in the allowed uids [0]"
        );
    }
}
