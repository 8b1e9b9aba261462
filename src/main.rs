fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    assumed::cli::main()
}

/// One malloc arena instead of glibc's one per thread: the daemon allocates
/// little on its hot path, and per-thread arenas hold on to freed memory
/// (about 2.5 MiB of RSS with 1,000 roles; docs/performance.md).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator tuning; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
