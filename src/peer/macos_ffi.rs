//! The macOS kernel calls behind `macos.rs`: the TCP table sysctl, libproc
//! (`proc_listpids`, `proc_pidinfo`, `proc_pidfdinfo`, `proc_pidpath`) and
//! `KERN_PROCARGS2`. Each returns owned bytes or numbers, and a failure as
//! `None` or an `io::Error`; reading the bytes is `darwin.rs`'s, which is
//! tested on every system.
//!
//! The declarations are the `libc` crate's. What it lacks is declared here,
//! from xnu's `bsd/sys/proc_info.h`; the one struct read from the kernel
//! that `libc` does not have, `socket_fdinfo`, is read as bytes
//! (`darwin::SOCKET_FDINFO_SIZE`).
//!
//! Every libproc call here returns 0 on failure with `errno` set
//! (libsyscall's `libproc.c`), and EPERM for a process of another user
//! unless we are root (`proc_security_policy`), except `PROC_PIDT_SHORTBSDINFO`
//! and `proc_pidpath`, which anyone may ask.

use std::ffi::{c_int, c_void};
use std::io;
use std::mem::size_of;
use std::ptr;
use std::sync::OnceLock;

use super::darwin::SOCKET_FDINFO_SIZE;

/// `proc_listpids` type: every process (proc_info.h).
const PROC_ALL_PIDS: u32 = 1;
/// `proc_pidfdinfo` flavor: a socket, as `struct socket_fdinfo` (proc_info.h).
const PROC_PIDFDSOCKETINFO: c_int = 3;
/// `CTL_MAXNAME`: the longest sysctl MIB.
const CTL_MAXNAME: usize = 12;

/// `net.inet.tcp.pcblist_n`: every TCP connection with its socket's user,
/// readable by any user (it is what `netstat` reads).
pub fn tcp_table() -> io::Result<Vec<u8>> {
    let mut mib = pcblist_mib()?.to_vec();
    let length = mib.len() as libc::c_uint;
    // The answer's size can grow between asking for it and reading (the
    // kernel's estimate leaves room for an eighth more): then ask again.
    for _ in 0..3 {
        let mut size: libc::size_t = 0;
        // SAFETY: `mib` is a valid MIB of `length` entries; a null old
        // pointer only asks for the size, written to `size`, which we own.
        let asked = unsafe {
            libc::sysctl(
                mib.as_mut_ptr(),
                length,
                ptr::null_mut(),
                &mut size,
                ptr::null_mut(),
                0,
            )
        };
        if asked != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut answer = vec![0u8; size];
        // SAFETY: the kernel writes at most `size` bytes to `answer`, which
        // holds that many, and stores how many it wrote in `size`.
        let read = unsafe {
            libc::sysctl(
                mib.as_mut_ptr(),
                length,
                answer.as_mut_ptr().cast::<c_void>(),
                &mut size,
                ptr::null_mut(),
                0,
            )
        };
        if read == 0 {
            answer.truncate(size);
            return Ok(answer);
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::ENOMEM) {
            return Err(error);
        }
    }
    Err(io::Error::from_raw_os_error(libc::ENOMEM))
}

/// The MIB of `net.inet.tcp.pcblist_n`, looked up once (it has no fixed
/// number: `OID_AUTO`).
fn pcblist_mib() -> io::Result<&'static [c_int]> {
    static MIB: OnceLock<Vec<c_int>> = OnceLock::new();
    if let Some(mib) = MIB.get() {
        return Ok(mib);
    }
    let mut mib = [0 as c_int; CTL_MAXNAME];
    let mut length: libc::size_t = mib.len();
    // SAFETY: a NUL-terminated name, and a MIB buffer of `length` entries
    // that we own; the kernel writes at most that many and their count.
    let found = unsafe {
        libc::sysctlnametomib(
            c"net.inet.tcp.pcblist_n".as_ptr(),
            mib.as_mut_ptr(),
            &mut length,
        )
    };
    if found != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(MIB.get_or_init(|| mib[..length.min(CTL_MAXNAME)].to_vec()))
}

/// Every pid, in the kernel's process list order: the newest first (fork
/// puts a new process at the head of `allproc`). Empty if it cannot be read.
pub fn all_pids() -> Vec<u32> {
    // SAFETY: a null buffer asks only for the size needed, in bytes.
    let needed = unsafe { libc::proc_listpids(PROC_ALL_PIDS, 0, ptr::null_mut(), 0) };
    let Ok(needed) = usize::try_from(needed) else {
        return Vec::new();
    };
    // The kernel's size already leaves room for 20 more; a few more still.
    let mut pids = vec![0 as c_int; needed / size_of::<c_int>() + 64];
    let Ok(bytes) = c_int::try_from(pids.len() * size_of::<c_int>()) else {
        return Vec::new();
    };
    // SAFETY: `pids` holds `bytes` bytes; the kernel writes at most that
    // many and returns how many.
    let filled =
        unsafe { libc::proc_listpids(PROC_ALL_PIDS, 0, pids.as_mut_ptr().cast::<c_void>(), bytes) };
    let filled = usize::try_from(filled).unwrap_or(0) / size_of::<c_int>();
    pids.truncate(filled);
    // pid 0 is the kernel.
    pids.into_iter()
        .filter_map(|pid| u32::try_from(pid).ok())
        .filter(|&pid| pid > 0)
        .collect()
}

/// A process's effective user, which anyone may ask
/// (`PROC_PIDT_SHORTBSDINFO`); `None` when it is gone.
pub fn user_of(pid: u32) -> Option<u32> {
    // SAFETY: proc_bsdshortinfo is integers and char arrays: all zeroes is
    // a valid value.
    let mut info: libc::proc_bsdshortinfo = unsafe { std::mem::zeroed() };
    let filled = pid_info(pid, libc::PROC_PIDT_SHORTBSDINFO, &mut info)?;
    filled.then_some(info.pbsi_uid)
}

/// A process's `proc_bsdinfo` (parent, start time); only for our own
/// user's processes unless we are root.
pub fn bsd_info(pid: u32) -> Option<libc::proc_bsdinfo> {
    // SAFETY: proc_bsdinfo is integers and char arrays: all zeroes is a
    // valid value.
    let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    let filled = pid_info(pid, libc::PROC_PIDTBSDINFO, &mut info)?;
    filled.then_some(info)
}

/// `proc_pidinfo` into one struct: whether the kernel filled all of it.
fn pid_info<T>(pid: u32, flavor: c_int, info: &mut T) -> Option<bool> {
    let pid = c_int::try_from(pid).ok()?;
    let size = c_int::try_from(size_of::<T>()).ok()?;
    // SAFETY: `info` is a live, writable `T` of `size` bytes; the kernel
    // writes at most that many.
    let filled =
        unsafe { libc::proc_pidinfo(pid, flavor, 0, (info as *mut T).cast::<c_void>(), size) };
    Some(filled == size)
}

/// A process's socket fds, the highest first (a new connection usually
/// has the highest); empty when its fds are not ours to list or it is gone.
pub fn socket_fds(pid: u32) -> Vec<c_int> {
    let Ok(pid) = c_int::try_from(pid) else {
        return Vec::new();
    };
    // SAFETY: a null buffer asks only for the size needed, in bytes.
    let needed = unsafe { libc::proc_pidinfo(pid, libc::PROC_PIDLISTFDS, 0, ptr::null_mut(), 0) };
    let Ok(needed) = usize::try_from(needed) else {
        return Vec::new();
    };
    let empty = libc::proc_fdinfo {
        proc_fd: 0,
        proc_fdtype: 0,
    };
    // The kernel's size leaves room for 20 more fds.
    let mut fds = vec![empty; needed / size_of::<libc::proc_fdinfo>()];
    let Ok(bytes) = c_int::try_from(fds.len() * size_of::<libc::proc_fdinfo>()) else {
        return Vec::new();
    };
    // SAFETY: `fds` holds `bytes` bytes of proc_fdinfo; the kernel writes
    // at most that many and returns how many.
    let filled = unsafe {
        libc::proc_pidinfo(
            pid,
            libc::PROC_PIDLISTFDS,
            0,
            fds.as_mut_ptr().cast::<c_void>(),
            bytes,
        )
    };
    fds.truncate(usize::try_from(filled).unwrap_or(0) / size_of::<libc::proc_fdinfo>());
    let mut sockets: Vec<c_int> = fds
        .into_iter()
        .filter(|fd| i64::from(fd.proc_fdtype) == i64::from(libc::PROX_FDTYPE_SOCKET))
        .map(|fd| fd.proc_fd)
        .collect();
    sockets.sort_unstable_by(|a, b| b.cmp(a));
    sockets
}

/// One socket fd's `struct socket_fdinfo`, as bytes for `darwin::socket_fd`.
pub fn socket_info(pid: u32, fd: c_int) -> Option<[u8; SOCKET_FDINFO_SIZE]> {
    let pid = c_int::try_from(pid).ok()?;
    let size = c_int::try_from(SOCKET_FDINFO_SIZE).ok()?;
    let mut info = [0u8; SOCKET_FDINFO_SIZE];
    // SAFETY: `info` holds SOCKET_FDINFO_SIZE bytes, what this flavor
    // copies out (the kernel refuses a smaller buffer, never overruns it).
    let filled = unsafe {
        libc::proc_pidfdinfo(
            pid,
            fd,
            PROC_PIDFDSOCKETINFO,
            info.as_mut_ptr().cast::<c_void>(),
            size,
        )
    };
    (filled == size).then_some(info)
}

/// A process's executable, which anyone may ask (`proc_pidpath`).
pub fn path(pid: u32) -> Option<String> {
    let pid = c_int::try_from(pid).ok()?;
    let mut buffer = vec![0u8; libc::PROC_PIDPATHINFO_MAXSIZE as usize];
    let size = u32::try_from(buffer.len()).ok()?;
    // SAFETY: `buffer` holds `size` bytes; the kernel writes a
    // NUL-terminated path within them and we get its length.
    let length = unsafe { libc::proc_pidpath(pid, buffer.as_mut_ptr().cast::<c_void>(), size) };
    let length = usize::try_from(length).ok().filter(|&length| length > 0)?;
    buffer.truncate(length.min(buffer.len()));
    Some(String::from_utf8_lossy(&buffer).into_owned())
}

/// A process's `KERN_PROCARGS2` (argc, executable, arguments,
/// environment); only for our own user's processes unless we are root.
pub fn process_arguments(pid: u32) -> Option<Vec<u8>> {
    let pid = c_int::try_from(pid).ok()?;
    // A buffer shorter than the arguments gets their tail, not their head
    // (sysctl_procargsx), and one longer than kern.argmax is refused.
    let mut size = argument_limit()?;
    let mut buffer = vec![0u8; size];
    let mut mib = [libc::CTL_KERN, libc::KERN_PROCARGS2, pid];
    // SAFETY: a 3-entry MIB; the kernel writes at most `size` bytes to
    // `buffer`, which holds that many, and stores how many in `size`.
    let read = unsafe {
        libc::sysctl(
            mib.as_mut_ptr(),
            3,
            buffer.as_mut_ptr().cast::<c_void>(),
            &mut size,
            ptr::null_mut(),
            0,
        )
    };
    if read != 0 {
        return None;
    }
    buffer.truncate(size);
    Some(buffer)
}

/// `kern.argmax`: the most a process's arguments and environment take.
fn argument_limit() -> Option<usize> {
    static LIMIT: OnceLock<Option<usize>> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        let mut limit: c_int = 0;
        let mut size = size_of::<c_int>();
        let mut mib = [libc::CTL_KERN, libc::KERN_ARGMAX];
        // SAFETY: a 2-entry MIB; the kernel writes one int to `limit`.
        let read = unsafe {
            libc::sysctl(
                mib.as_mut_ptr(),
                2,
                (&mut limit as *mut c_int).cast::<c_void>(),
                &mut size,
                ptr::null_mut(),
                0,
            )
        };
        (read == 0).then(|| usize::try_from(limit).ok()).flatten()
    })
}
