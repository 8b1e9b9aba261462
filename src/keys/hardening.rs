//! What keeps the daemon's memory, where the keys live once read, away
//! from the person's other processes: `serve` calls [`harden_process`]
//! first thing.
//!
//! * Linux: `prctl(PR_SET_DUMPABLE, 0)`. The kernel then writes no core
//!   file for it, and a process of the same user cannot `ptrace` it (so no
//!   debugger, no `gdb -p`, no `/proc/PID/mem`, `environ`, `maps`): the
//!   `/proc/PID` files belong to root. Root, or a process with
//!   `CAP_SYS_PTRACE`, still can. The flag is per process and an `execve`
//!   resets it, so the programs the daemon runs (`credential_process`,
//!   `mfa_process`) are as they were.
//! * macOS: `ptrace(PT_DENY_ATTACH)`, the usual equivalent: a debugger
//!   attaching later fails (and a daemon started under one exits at once),
//!   plus a soft core-file limit of zero, since the first does not stop
//!   core files.
//!
//! Neither is a wall against root, the kernel or swap; docs/keys.md,
//! "Memory", says what they do and do not stop.

/// Marks this process non-dumpable; an error names the call that failed
/// (the daemon logs it and serves anyway: refusing to start would not keep
/// the keys any safer than the plaintext file the person would go back to).
pub fn harden_process() -> Result<(), String> {
    platform::harden()
}

/// Whether the kernel says this process is dumpable (Linux; `None`
/// elsewhere): what `status` and the tests can show.
pub fn dumpable() -> Option<bool> {
    platform::dumpable()
}

#[cfg(target_os = "linux")]
mod platform {
    pub fn harden() -> Result<(), String> {
        // SAFETY: PR_SET_DUMPABLE takes one integer argument and touches no
        // memory of ours.
        if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
            return Err(format!(
                "prctl(PR_SET_DUMPABLE, 0): {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    pub fn dumpable() -> Option<bool> {
        // SAFETY: PR_GET_DUMPABLE reads a flag of this process.
        let flag = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
        (flag >= 0).then_some(flag != 0)
    }
}

#[cfg(target_os = "macos")]
mod platform {
    pub fn harden() -> Result<(), String> {
        // SAFETY: PT_DENY_ATTACH ignores its other arguments.
        if unsafe { libc::ptrace(libc::PT_DENY_ATTACH, 0, std::ptr::null_mut(), 0) } != 0 {
            return Err(format!(
                "ptrace(PT_DENY_ATTACH): {}",
                std::io::Error::last_os_error()
            ));
        }
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit with a valid, owned rlimit struct.
        let set = unsafe {
            libc::getrlimit(libc::RLIMIT_CORE, &mut limit) == 0 && {
                // The soft limit only: the hard one would bind every program
                // the daemon starts for good.
                limit.rlim_cur = 0;
                libc::setrlimit(libc::RLIMIT_CORE, &limit) == 0
            }
        };
        if !set {
            return Err(format!(
                "setrlimit(RLIMIT_CORE, 0): {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    pub fn dumpable() -> Option<bool> {
        None
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
mod platform {
    pub fn harden() -> Result<(), String> {
        Err("no way to mark the process non-dumpable on this platform".into())
    }

    pub fn dumpable() -> Option<bool> {
        None
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// In a child process: the flag is per process, and the test runner's
    /// own must stay as it is.
    #[test]
    fn the_flag_is_set() {
        // SAFETY: fork in a test; the child only makes async-signal-safe
        // calls (prctl, _exit) before it exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            let ok = super::harden_process().is_ok() && super::dumpable() == Some(false);
            // SAFETY: _exit ends the child without running the parent's
            // atexit handlers or destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waitpid on the child just forked, with a valid pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }
}
