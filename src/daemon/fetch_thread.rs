//! The thread the cache's fetch attempts run on. A cold role draws every
//! client at once: with a thousand first requests queued on the workers,
//! STS's answer (read by the HTTP client's connection task), the attempt that
//! stores it, and the wake-up of its waiters would all wait behind that
//! backlog. On this thread the answer is read, stored and handed to every
//! waiter without a turn on the workers; the waiters come back through the
//! workers' global queue, which they check every few tasks, so the first
//! answer leaves soon after STS's (docs/performance.md, cold).

use tokio::runtime::Handle;

/// Starts the thread and its single-threaded runtime, which lives as long as
/// the process; the handle spawns onto it.
pub fn start() -> std::io::Result<Handle> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("assumed-sts".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    Ok(handle)
}
