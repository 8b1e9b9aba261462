//! Socket inode → process on Linux: the `/proc/<pid>/fd` links that read
//! `socket:[inode]`, for the walk in `walk.rs` (which decides the order and
//! when to stop). Within a process the highest fds are read first, since a
//! new connection usually gets the highest one. Processes of other users
//! give nothing unless we may read their fds (root may).

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;

use super::cmdline::command_line;
use super::walk::{self, Processes};
use super::{Process, SocketOwner};

pub fn holding(
    sockets: &[SocketOwner],
    likely: &[u32],
    reach: Option<usize>,
) -> HashMap<u64, Process> {
    walk::holding(&ProcFs, sockets, likely, reach)
}

/// The processes as `/proc` lists them.
struct ProcFs;

impl Processes for ProcFs {
    fn newest_first(&self) -> Vec<u32> {
        newest_first()
    }

    fn uid_of(&self, pid: u32) -> Option<u32> {
        fs::metadata(format!("/proc/{pid}"))
            .ok()
            .map(|meta| meta.uid())
    }

    fn sockets_of(&self, pid: u32, wanted: &HashSet<u64>) -> Vec<u64> {
        sockets_of(pid, wanted)
    }

    fn describe(&self, pid: u32) -> Option<(Process, u32)> {
        describe(pid)
    }
}

/// Every pid in `/proc`, the most recently started first: descending from
/// the last pid handed out, then (pids wrap around) the higher ones.
fn newest_first() -> Vec<u32> {
    let last: u32 = fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(u32::MAX);
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable_by_key(|&pid| Reverse((pid <= last, pid)));
    pids
}

/// Which of `wanted` the process holds, reading its highest fds first and
/// stopping once it has them all; nothing when its fds are not ours to read.
fn sockets_of(pid: u32, wanted: &HashSet<u64>) -> Vec<u64> {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let mut fds: Vec<u32> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable_by_key(|&fd| Reverse(fd));
    let mut held = Vec::new();
    for fd in fds {
        let Ok(target) = fs::read_link(format!("/proc/{pid}/fd/{fd}")) else {
            continue;
        };
        let Some(inode) = target.to_str().and_then(socket_inode) else {
            continue;
        };
        if wanted.contains(&inode) && !held.contains(&inode) {
            held.push(inode);
            if held.len() == wanted.len() {
                break;
            }
        }
    }
    held
}

fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The process, and its parent's pid.
pub(super) fn describe(pid: u32) -> Option<(Process, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (parent, started) = parent_and_start(&stat)?;
    let exe = fs::read_link(format!("/proc/{pid}/exe"))
        .map(|path| path.display().to_string())
        .unwrap_or_default();
    let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| command_line(&raw))
        .unwrap_or_default();
    let process = Process {
        pid,
        started,
        exe,
        cmdline,
    };
    Some((process, parent))
}

/// Fields 4 (the parent's pid) and 22 (start time) of `/proc/<pid>/stat`,
/// counted after the parenthesised command name (which may itself hold
/// spaces and parentheses).
fn parent_and_start(stat: &str) -> Option<(u32, u64)> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_ascii_whitespace();
    let parent = fields.nth(1)?.parse().ok()?;
    let started = fields.nth(17)?.parse().ok()?;
    Some((parent, started))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_socket_links_and_start_times() {
        assert_eq!(socket_inode("socket:[12345]"), Some(12345));
        assert_eq!(socket_inode("pipe:[12345]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
        let stat =
            "4242 (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parent_and_start(stat), Some((1, 987_654)));
    }
}
