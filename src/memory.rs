//! Memory back to the system after start-up, when the daemon goes quiet,
//! and after a load burst.
//!
//! Most of an idle daemon's resident memory is not its heap but pages of its
//! own 13 MiB executable that something once ran or read: start-up (clap,
//! the TOML config, `~/.aws/config`, the logger, the runtime, the dynamic
//! loader's relocations), one request (hyper, axum, tokio: the kernel maps
//! 64 KiB around every page fault, and this code is spread over most of the
//! binary) or the first STS call (the SDK, rustls) each map several MiB of
//! it, and a process keeps them mapped until it exits. These pages are clean
//! copies of the file: unmapping them (`MADV_DONTNEED` on the executable's
//! read-only segments) leaves them in the page cache, where the kernel can
//! reclaim them, and whatever runs again maps them back on its next use (a
//! minor fault, a few µs per 64 KiB). So the daemon unmaps its code when
//! start-up is over (`daemon` calls [`unmap_code`] once it is ready, and
//! after each reload) and whenever it goes quiet (no connection open for
//! [`QUIET_FOR`]), and keeps mapped only the code that runs while it idles.
//! See docs/performance.md.
//!
//! A burst of connections also leaves glibc's heap large and mostly free
//! (the buffers of 64 busy connections); nothing returns it, so the daemon
//! would keep the peak RSS all day. When the last connection of a burst
//! closes and stays closed for a moment, `malloc_trim` hands the free pages
//! back.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// Quiet this long after the last connection closed: the daemon is idle, a
/// burst is over (and the metrics recorder, drained every 5 s, has let go
/// of its samples).
const QUIET_FOR: Duration = Duration::from_secs(6);
/// Fewer connections than this since the last trim are not a burst.
const BURST: usize = 16;

static OPEN: AtomicUsize = AtomicUsize::new(0);
static SINCE_TRIM: AtomicUsize = AtomicUsize::new(0);
/// How many times the last open connection has closed.
static WENT_QUIET: AtomicUsize = AtomicUsize::new(0);

/// Held for as long as a connection is served.
pub struct OpenConnection(());

/// Counts a connection; must be called inside the tokio runtime (the first
/// call starts the task that trims).
pub fn connection_opened() -> OpenConnection {
    trimmer();
    OPEN.fetch_add(1, Ordering::AcqRel);
    SINCE_TRIM.fetch_add(1, Ordering::AcqRel);
    OpenConnection(())
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        if OPEN.fetch_sub(1, Ordering::AcqRel) == 1 {
            WENT_QUIET.fetch_add(1, Ordering::AcqRel);
            trimmer().notify_one();
        }
    }
}

fn trimmer() -> &'static Notify {
    static QUIET: OnceLock<&'static Notify> = OnceLock::new();
    QUIET.get_or_init(|| {
        let quiet: &'static Notify = Box::leak(Box::new(Notify::new()));
        tokio::spawn(async move {
            let mut handled = 0;
            loop {
                quiet.notified().await;
                // Quiet for QUIET_FOR since the *last* connection closed;
                // a close already given back for is no news.
                loop {
                    let closes = WENT_QUIET.load(Ordering::Acquire);
                    if closes == handled {
                        break;
                    }
                    tokio::time::sleep(QUIET_FOR).await;
                    if OPEN.load(Ordering::Acquire) != 0 {
                        break; // busy again: its last close notifies
                    }
                    if WENT_QUIET.load(Ordering::Acquire) == closes {
                        handled = closes;
                        let burst = SINCE_TRIM.load(Ordering::Acquire) >= BURST;
                        if burst {
                            SINCE_TRIM.store(0, Ordering::Release);
                        }
                        give_back(burst);
                        break;
                    }
                }
            }
        });
        quiet
    })
}

/// Quiet: the code that served goes; after a burst, the free heap too.
fn give_back(burst: bool) {
    unmap_code();
    if !burst {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it is
    // thread-safe and touches no memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
    tracing::debug!("load burst over; returned free heap memory");
}

/// Unmaps the executable's read-only segments (code, constants, unwind
/// tables): the kernel maps back, from the page cache, whatever is used
/// next. Writable segments, and the read-only-after-relocation part of one
/// (`PT_GNU_RELRO` lies inside a writable `PT_LOAD`), hold data and are
/// never touched. Not under a debugger (or strace): the breakpoints it
/// wrote into the code live in the mapped copies and would silently go.
pub fn unmap_code() {
    #[cfg(target_os = "linux")]
    if !traced() {
        // SAFETY: the callback only reads the program headers the loader
        // hands it, and stops after the first object, which is the executable.
        unsafe {
            libc::dl_iterate_phdr(Some(unmap_read_only_segments), std::ptr::null_mut());
        }
    }
}

/// Whether a ptrace tracer (gdb, strace) is attached: `/proc/self/status`
/// is generated from memory, a read costs microseconds.
#[cfg(target_os = "linux")]
fn traced() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("TracerPid:"))
            .is_some_and(|pid| pid.trim() != "0")
    })
}

#[cfg(target_os = "linux")]
unsafe extern "C" fn unmap_read_only_segments(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    _data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: dl_iterate_phdr passes a valid info whose dlpi_phdr points at
    // dlpi_phnum program headers, for the duration of the call.
    let (base, headers) = unsafe {
        let info = &*info;
        let count = usize::from(info.dlpi_phnum);
        (
            info.dlpi_addr as usize,
            std::slice::from_raw_parts(info.dlpi_phdr, count),
        )
    };
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    for header in headers {
        if header.p_type != libc::PT_LOAD || header.p_flags & libc::PF_W != 0 {
            continue;
        }
        // Only whole pages inside the segment: an edge page may be shared
        // with a writable neighbour.
        let start = (base + header.p_vaddr as usize).next_multiple_of(page);
        let end = (base + (header.p_vaddr + header.p_memsz) as usize) / page * page;
        if end > start {
            // SAFETY: the range is whole pages of a read-only private file
            // mapping of our own executable, which nothing ever writes: after
            // MADV_DONTNEED its pages read back the same from the file.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
            }
        }
    }
    // The first object is the executable itself; the libraries are shared.
    1
}
