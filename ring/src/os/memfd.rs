//! Sealed memfd regions: create, seal, verify before mapping, map.
//!
//! The receiving side of a memfd never maps it before it has checked, with
//! `F_GET_SEALS` and `fstat`, that the size it is about to map can no longer change.
//! Without `F_SEAL_SHRINK` the sender could truncate the file after we mapped it and
//! every later access would raise `SIGBUS` in our process.

use std::ffi::CStr;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use crate::error::{AttachError, FdFault, OsError, PeerFault};

/// A set of memfd seals (`F_SEAL_*`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Seals(u32);

impl Seals {
    /// No seals.
    pub const NONE: Seals = Seals(0);
    /// `F_SEAL_SEAL`: no further seal can be added or removed.
    pub const SEAL: Seals = Seals(libc::F_SEAL_SEAL as u32);
    /// `F_SEAL_SHRINK`: the file cannot get smaller (no `SIGBUS` for mappers).
    pub const SHRINK: Seals = Seals(libc::F_SEAL_SHRINK as u32);
    /// `F_SEAL_GROW`: the file cannot get larger.
    pub const GROW: Seals = Seals(libc::F_SEAL_GROW as u32);
    /// `F_SEAL_WRITE`: the contents can never change again.
    pub const WRITE: Seals = Seals(libc::F_SEAL_WRITE as u32);
    /// `F_SEAL_FUTURE_WRITE`: mappings that exist keep writing; nobody can make a new
    /// writable mapping, `write(2)` or punch holes.
    pub const FUTURE_WRITE: Seals = Seals(libc::F_SEAL_FUTURE_WRITE as u32);

    /// The seals every region shared with an untrusted peer carries: its size is fixed.
    pub const FIXED_SIZE: Seals = Seals(Self::SHRINK.0 | Self::GROW.0 | Self::SEAL.0);
    /// Fixed size, and only the creator's own mapping can write.
    pub const READ_ONLY_FOR_PEER: Seals = Seals(Self::FIXED_SIZE.0 | Self::FUTURE_WRITE.0);
    /// Fixed size and fixed contents.
    pub const IMMUTABLE: Seals = Seals(Self::FIXED_SIZE.0 | Self::WRITE.0);

    const NAMES: [(Seals, &'static str); 5] = [
        (Seals::SHRINK, "F_SEAL_SHRINK"),
        (Seals::GROW, "F_SEAL_GROW"),
        (Seals::WRITE, "F_SEAL_WRITE"),
        (Seals::FUTURE_WRITE, "F_SEAL_FUTURE_WRITE"),
        (Seals::SEAL, "F_SEAL_SEAL"),
    ];

    /// The raw `F_SEAL_*` bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Seals from raw `F_SEAL_*` bits.
    pub const fn from_bits(bits: u32) -> Seals {
        Seals(bits)
    }

    /// True when every seal of `other` is in `self`.
    pub const fn contains(self, other: Seals) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union of two seal sets.
    pub const fn union(self, other: Seals) -> Seals {
        Seals(self.0 | other.0)
    }

    /// The name of the first seal of `required` missing from `self`, if any.
    pub fn first_missing(self, required: Seals) -> Option<&'static str> {
        Self::NAMES
            .iter()
            .find(|(s, _)| required.contains(*s) && !self.contains(*s))
            .map(|(_, n)| *n)
    }
}

impl fmt::Debug for Seals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Self::NAMES
            .iter()
            .filter(|(s, _)| self.contains(*s))
            .map(|(_, n)| *n)
            .collect();
        if names.is_empty() {
            f.write_str("(none)")
        } else {
            f.write_str(&names.join(" | "))
        }
    }
}

/// Creates an anonymous memfd of `size` bytes that allows sealing, close-on-exec.
pub fn create(name: &CStr, size: usize) -> Result<OwnedFd, OsError> {
    // SAFETY: `name` is a valid NUL-terminated string; the flags are valid.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(OsError::last("memfd_create"));
    }
    // SAFETY: `memfd_create` returned a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // A size over `off_t`'s range is what `ftruncate` itself calls too large.
    let size = i64::try_from(size).map_err(|_| OsError::errno("ftruncate", libc::EFBIG))?;
    // SAFETY: plain syscall on an fd we own.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } < 0 {
        return Err(OsError::last("ftruncate"));
    }
    Ok(fd)
}

/// Adds `seals` to a memfd.
pub fn add_seals(fd: BorrowedFd<'_>, seals: Seals) -> Result<(), OsError> {
    // SAFETY: F_ADD_SEALS takes an int argument and touches no memory of ours.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals.0 as libc::c_int) } < 0 {
        return Err(OsError::last("fcntl(F_ADD_SEALS)"));
    }
    Ok(())
}

/// The seals on a memfd; an fd that is not a memfd (or shmem file) is refused.
pub fn seals(fd: BorrowedFd<'_>) -> Result<Seals, AttachError> {
    // SAFETY: F_GET_SEALS takes no argument and touches no memory of ours.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINVAL) {
            return Err(FdFault::NotAMemfd.into());
        }
        return Err(OsError {
            op: "fcntl(F_GET_SEALS)",
            source: e,
        }
        .into());
    }
    Ok(Seals(r as u32))
}

/// The size of a file as `fstat` reports it.
pub fn size(fd: BorrowedFd<'_>) -> Result<u64, AttachError> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` points to writable memory of the right size for `fstat`.
    if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } < 0 {
        return Err(OsError::last("fstat").into());
    }
    // SAFETY: `fstat` succeeded, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(FdFault::NotRegular.into());
    }
    Ok(st.st_size as u64)
}

/// Checks a received memfd before anything maps it: it is a memfd, it carries every
/// seal in `required`, and its sealed size lies in `min..=max`. Returns the size.
///
/// Because `required` must include [`Seals::SHRINK`] for any fd that will be mapped,
/// the size returned stays valid for the life of the fd: a mapping of that many bytes
/// can never fault with `SIGBUS`.
pub fn verify(
    fd: BorrowedFd<'_>,
    required: Seals,
    what: &'static str,
    min: u64,
    max: u64,
) -> Result<u64, AttachError> {
    let have = seals(fd)?;
    if let Some(seal) = have.first_missing(required) {
        return Err(PeerFault::MissingSeal { seal }.into());
    }
    let len = size(fd)?;
    if len < min {
        return Err(bad_size(what, min, len));
    }
    if len > max {
        return Err(bad_size(what, max, len));
    }
    Ok(len)
}

fn bad_size(what: &'static str, expected: u64, actual: u64) -> AttachError {
    PeerFault::BadSize {
        what,
        expected,
        actual,
    }
    .into()
}

/// How a region is mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `PROT_READ`.
    ReadOnly,
    /// `PROT_READ | PROT_WRITE`.
    ReadWrite,
}

/// A shared mapping of a memfd, unmapped on drop.
///
/// It never hands out Rust references into the memory: another process may change
/// it at any moment. Users get raw pointers and copy with `ptr::copy_nonoverlapping`
/// or use atomics.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    /// Bytes of address space unmapped on drop: `len`, or with a read pad (see
    /// [`Mapping::map_padded`]) the file's pages and the pad's.
    reserved: usize,
}

// SAFETY: the mapping is plain memory owned by this value; moving it across threads
// moves only the pointer. All access goes through raw pointers whose users uphold
// their own synchronisation.
unsafe impl Send for Mapping {}
// SAFETY: `&Mapping` only exposes the pointer and length; reading them is race-free.
unsafe impl Sync for Mapping {}

impl Access {
    /// The `mmap` protection of a mapping of `len` bytes (none of zero: `mmap`
    /// itself refuses it with `EINVAL`).
    fn prot(self, len: usize) -> Result<i32, OsError> {
        if len == 0 {
            return Err(OsError::errno("mmap", libc::EINVAL));
        }
        Ok(match self {
            Access::ReadOnly => libc::PROT_READ,
            Access::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
        })
    }
}

impl Mapping {
    /// Maps `len` bytes of `fd` shared.
    ///
    /// Call only after [`verify`] proved that the file is at least `len` bytes and
    /// sealed against shrinking; otherwise a later truncation raises `SIGBUS`.
    pub fn map(fd: BorrowedFd<'_>, len: usize, access: Access) -> Result<Mapping, OsError> {
        let prot = access.prot(len)?;
        // SAFETY: a fresh shared mapping at an address the kernel picks; it overlaps no
        // Rust object. Its bytes may change under us (another process maps the file),
        // which is why nothing turns them into references.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(OsError::last("mmap"));
        }
        Ok(Mapping {
            ptr: NonNull::new(p.cast()).expect("mmap returned NULL without MAP_FIXED"),
            len,
            reserved: len,
        })
    }

    /// Maps `len` bytes of `fd` shared, followed by at least `pad` readable zero
    /// bytes that belong to no file.
    ///
    /// Code that reads what a peer sent may read a little past its end: GStreamer's
    /// video unpackers read whole pixel groups and words (a 1-pixel-wide UYVP row
    /// is 5 bytes to them in a 4-byte stride), decoders read ahead. In a plain
    /// mapping a frame that ends where the file ends would then fault, in this
    /// process; with the pad those reads see zeros. The same preconditions as
    /// [`Mapping::map`].
    pub fn map_padded(
        fd: BorrowedFd<'_>,
        len: usize,
        access: Access,
        pad: usize,
    ) -> Result<Mapping, OsError> {
        let prot = access.prot(len)?;
        let page = page_size();
        let reserved = len
            .div_ceil(page)
            .checked_add(pad.div_ceil(page))
            .and_then(|pages| pages.checked_mul(page))
            .ok_or(OsError::errno("mmap", libc::ENOMEM))?;
        // SAFETY: a fresh private anonymous mapping (zero pages, read-only) at an
        // address the kernel picks; it overlaps no Rust object.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                reserved,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(OsError::last("mmap"));
        }
        // SAFETY: MAP_FIXED replaces the first pages of the reservation just made,
        // which this function alone owns and nothing points into yet; the file's
        // bytes may change under us, which is why nothing turns them into references.
        let p = unsafe {
            libc::mmap(
                base,
                len,
                prot,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            let e = OsError::last("mmap");
            // SAFETY: the reservation made above, unmapped once.
            unsafe { libc::munmap(base, reserved) };
            return Err(e);
        }
        Ok(Mapping {
            ptr: NonNull::new(p.cast()).expect("mmap returned NULL"),
            len,
            reserved,
        })
    }

    /// The first byte of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The mapped length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: empty mappings are refused.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`reserved` span what `map` or `map_padded` mapped, which
        // nothing else unmaps.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.reserved);
        }
    }
}

/// A memfd and one mapping of it.
#[derive(Debug)]
pub struct Region {
    fd: OwnedFd,
    map: Mapping,
}

impl Region {
    /// Creates a memfd of `len` bytes, maps it read-write and seals its size
    /// (`F_SEAL_SHRINK | F_SEAL_GROW`); `extra` seals are added after mapping, so
    /// [`Seals::FUTURE_WRITE`] keeps this mapping writable while refusing any other.
    /// `F_SEAL_SEAL` is always added last.
    pub fn create(name: &CStr, len: usize, extra: Seals) -> Result<Region, OsError> {
        let fd = create(name, len)?;
        let map = Mapping::map(fd.as_fd(), len, Access::ReadWrite)?;
        add_seals(fd.as_fd(), Seals::FIXED_SIZE.union(extra))?;
        Ok(Region { fd, map })
    }

    /// Verifies a received memfd (see [`verify`]) and maps all of it. A file of no
    /// bytes is refused whatever `min` says (there is nothing to map).
    ///
    /// # Panics
    /// If `required` lacks [`Seals::SHRINK`]: without it the peer could truncate the
    /// file under the mapping, so no caller may ask for that.
    pub fn open(
        fd: OwnedFd,
        required: Seals,
        what: &'static str,
        min: u64,
        max: u64,
        access: Access,
    ) -> Result<Region, AttachError> {
        Region::open_padded(fd, required, what, min, max, access, 0)
    }

    /// [`Region::open`], and when `pad` is not 0 the mapping is followed by at least
    /// `pad` readable zero bytes (see [`Mapping::map_padded`]).
    pub fn open_padded(
        fd: OwnedFd,
        required: Seals,
        what: &'static str,
        min: u64,
        max: u64,
        access: Access,
        pad: usize,
    ) -> Result<Region, AttachError> {
        assert!(
            required.contains(Seals::SHRINK),
            "a region is opened only with F_SEAL_SHRINK required"
        );
        let len = verify(fd.as_fd(), required, what, min.max(1), max)?;
        let len = usize::try_from(len).map_err(|_| bad_size(what, max, len))?;
        let map = if pad == 0 {
            Mapping::map(fd.as_fd(), len, access)?
        } else {
            Mapping::map_padded(fd.as_fd(), len, access, pad)?
        };
        Ok(Region { fd, map })
    }

    /// The memfd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The mapping.
    pub fn mapping(&self) -> &Mapping {
        &self.map
    }

    /// A new fd for the same file, to hand to a peer.
    pub fn dup_fd(&self) -> Result<OwnedFd, OsError> {
        self.fd.try_clone().map_err(|e| OsError {
            op: "fcntl(F_DUPFD_CLOEXEC)",
            source: e,
        })
    }
}

/// Page size of this machine.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p <= 0 { 4096 } else { p as usize }
}

/// `n` rounded up to a multiple of the page size, or `None` on overflow.
pub fn page_round(n: usize) -> Option<usize> {
    let p = page_size();
    n.checked_add(p - 1).map(|v| v / p * p)
}
