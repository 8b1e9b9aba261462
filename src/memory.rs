//! Memory back to the system after a load burst. A burst of connections
//! leaves glibc's heap large and mostly free (the buffers of 64 busy
//! connections); nothing returns it, so the daemon would keep the peak RSS
//! all day. When the last connection of a burst closes and stays closed for
//! a moment, `malloc_trim` hands the free pages back.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// Quiet this long after the last connection closed: the burst is over
/// (and the metrics recorder, drained every 5 s, has let go of its samples).
const QUIET_FOR: Duration = Duration::from_secs(6);
/// Fewer connections than this since the last trim are not a burst.
const BURST: usize = 16;

static OPEN: AtomicUsize = AtomicUsize::new(0);
static SINCE_TRIM: AtomicUsize = AtomicUsize::new(0);

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
            trimmer().notify_one();
        }
    }
}

fn trimmer() -> &'static Notify {
    static QUIET: OnceLock<&'static Notify> = OnceLock::new();
    QUIET.get_or_init(|| {
        let quiet: &'static Notify = Box::leak(Box::new(Notify::new()));
        tokio::spawn(async move {
            loop {
                quiet.notified().await;
                tokio::time::sleep(QUIET_FOR).await;
                if OPEN.load(Ordering::Acquire) == 0 && SINCE_TRIM.load(Ordering::Acquire) >= BURST
                {
                    SINCE_TRIM.store(0, Ordering::Release);
                    give_back();
                }
            }
        });
        quiet
    })
}

fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it is
    // thread-safe and touches no memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
    tracing::debug!("load burst over; returned free heap memory");
}
