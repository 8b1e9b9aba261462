//! STS fetches on a thread of their own. A cold role draws every client at
//! once: with a thousand first requests queued on the workers, STS's answer
//! (read by the HTTP client's connection task), the fetch, and the waiters
//! it wakes would all wait behind that backlog. Here the answer is read and
//! the fetch finished on this thread, and the cache's attempt is woken from
//! outside the workers (their global queue, checked every few dozen tasks),
//! so the first answer leaves soon after STS's (docs/performance.md, cold).

use std::sync::Arc;
use std::time::SystemTime;

use tokio::runtime::Handle;

use crate::cache::{FetchError, FetchFuture, Fetcher, RoleSpec};
use crate::credentials::Issued;

pub struct OnOwnThread<F> {
    inner: Arc<F>,
    runtime: Handle,
}

impl<F: Fetcher> OnOwnThread<F> {
    /// Starts the thread and its single-threaded runtime, which lives as
    /// long as the process.
    pub fn start(inner: Arc<F>) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("assumed-sts".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
        Ok(OnOwnThread {
            inner,
            runtime: handle,
        })
    }
}

/// Aborts the fetch when the cache stops waiting for it (its deadline), as
/// dropping the fetch itself would: a `credential_process` it runs is
/// killed with it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<F: Fetcher> Fetcher for OnOwnThread<F> {
    fn fetch<'a>(&'a self, role: &'a RoleSpec, upstream: Option<&'a Issued>) -> FetchFuture<'a> {
        let (inner, role, upstream) = (self.inner.clone(), role.clone(), upstream.cloned());
        let task = AbortOnDrop(
            self.runtime
                .spawn(async move { inner.fetch(&role, upstream.as_ref()).await }),
        );
        Box::pin(async move {
            let mut task = task;
            (&mut task.0)
                .await
                .unwrap_or_else(|_| Err(FetchError::lost()))
        })
    }

    fn forget_failures(&self) {
        self.inner.forget_failures();
    }

    fn person_acted_since(&self, role: &RoleSpec, failed_at: SystemTime) -> bool {
        self.inner.person_acted_since(role, failed_at)
    }
}
