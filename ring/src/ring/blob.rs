//! `write_once`: a sealed, immutable blob to hand to a peer.
//!
//! The writer fills a fresh memfd, unmaps it, then seals it with `F_SEAL_WRITE`,
//! `F_SEAL_SHRINK`, `F_SEAL_GROW` and `F_SEAL_SEAL`. The kernel refuses `F_SEAL_WRITE`
//! while any writable shared mapping exists, and refuses any new one afterwards, so a
//! reader that finds those seals knows the bytes can never change again. That is the
//! one case where handing out a plain `&[u8]` into shared memory is sound.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::error::{Error, Result};
use crate::os::memfd::{self, Access, Mapping, Seals};

/// The largest blob [`ReadOnlyBlob::open`] accepts unless told otherwise (1 GiB).
pub const DEFAULT_MAX_BLOB: u64 = 1 << 30;

/// Creates a memfd of `size` bytes, lets `fill` write its contents, and seals it
/// immutable. Returns the fd to hand to peers.
///
/// ```
/// let fd = shmring::write_once(5, |b| b.copy_from_slice(b"hello"))?;
/// let blob = shmring::ReadOnlyBlob::open(fd, 1024)?;
/// assert_eq!(blob.as_bytes(), b"hello");
/// # Ok::<(), shmring::Error>(())
/// ```
pub fn write_once(size: usize, fill: impl FnOnce(&mut [u8])) -> Result<OwnedFd> {
    const NAME: &CStr = c"shmring-blob";
    let fd = memfd::create(NAME, size)?;
    if size > 0 {
        let map = Mapping::map(fd.as_fd(), size, Access::ReadWrite)?;
        // SAFETY: the memfd was created just now and no other process has it yet, so
        // this mapping is the only way to reach these bytes: a unique `&mut [u8]` of
        // exactly the mapped length is sound until the mapping is dropped below.
        let bytes = unsafe { std::slice::from_raw_parts_mut(map.as_ptr(), size) };
        fill(bytes);
        drop(map);
    }
    memfd::add_seals(fd.as_fd(), Seals::IMMUTABLE)?;
    Ok(fd)
}

/// The reading side of [`write_once`]: a verified, read-only mapping of an immutable blob.
#[derive(Debug)]
pub struct ReadOnlyBlob {
    fd: OwnedFd,
    map: Option<Mapping>,
    len: usize,
}

impl ReadOnlyBlob {
    /// Checks that `fd` is a memfd sealed `F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW |
    /// F_SEAL_SEAL` of at most `max_len` bytes, then maps it read-only.
    pub fn open(fd: OwnedFd, max_len: u64) -> Result<ReadOnlyBlob> {
        let len = memfd::verify(fd.as_fd(), Seals::IMMUTABLE, "blob", 0, max_len)?;
        let len = usize::try_from(len).map_err(|_| Error::bad_size("blob", max_len, len))?;
        let map = if len == 0 {
            None
        } else {
            Some(Mapping::map(fd.as_fd(), len, Access::ReadOnly)?)
        };
        Ok(ReadOnlyBlob { fd, map, len })
    }

    /// The contents.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.map {
            // SAFETY: `open` verified F_SEAL_WRITE (contents immutable for everyone,
            // the kernel refuses writable mappings and `write(2)`) and F_SEAL_SHRINK
            // (the `len` bytes stay backed, no SIGBUS). The slice lives no longer than
            // `self`, which owns the mapping.
            Some(m) => unsafe { std::slice::from_raw_parts(m.as_ptr(), self.len) },
            None => &[],
        }
    }

    /// The blob's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty blob.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The memfd, e.g. to pass it on.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
