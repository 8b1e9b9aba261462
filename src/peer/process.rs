//! Socket inode → process: the `/proc/<pid>/fd` links that read
//! `socket:[inode]`. One walk finds every socket asked for and stops as
//! soon as it has: it looks first at the processes that held sockets before
//! (a long-lived SDK opening another connection), then at the newest
//! processes of the sockets' users (a client that just connected is usually
//! among the newest, and a one-shot `curl` must be found while it still
//! waits for its answer), then at everything else. Within a process the
//! highest fds are read first, since a new connection usually gets the
//! highest one. Processes of other users are skipped unless we may read
//! their fds (root may).

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;

use super::{CMDLINE_LIMIT, Process, SocketOwner};

pub fn holding(
    sockets: &[SocketOwner],
    likely: &[u32],
    reach: Option<usize>,
) -> HashMap<u64, Process> {
    let mut walk = Walk {
        own: std::process::id(),
        remaining: sockets.iter().map(|socket| socket.inode).collect(),
        found: HashMap::new(),
        looked: HashSet::new(),
    };
    for &pid in likely {
        if walk.done() {
            return walk.found;
        }
        walk.look(pid);
    }
    let users: HashSet<u32> = sockets.iter().map(|socket| socket.uid).collect();
    // Processes of other users last: as root they are readable, and a
    // socket's user is nearly always its process's. (Not skipped: a process
    // that changed its user after connecting still holds the socket.)
    let mut others = Vec::new();
    let mut left = reach.unwrap_or(usize::MAX);
    for pid in newest_first() {
        if walk.done() || left == 0 {
            return walk.found;
        }
        match fs::metadata(format!("/proc/{pid}")) {
            Ok(meta) if users.contains(&meta.uid()) => {
                walk.look(pid);
                left -= 1;
            }
            Ok(_) => others.push(pid),
            Err(_) => {}
        }
    }
    if reach.is_some() {
        return walk.found;
    }
    for pid in others {
        if walk.done() {
            break;
        }
        walk.look(pid);
    }
    walk.found
}

struct Walk {
    own: u32,
    /// Inodes not found yet.
    remaining: HashSet<u64>,
    found: HashMap<u64, Process>,
    looked: HashSet<u32>,
}

impl Walk {
    fn done(&self) -> bool {
        self.remaining.is_empty()
    }

    fn look(&mut self, pid: u32) {
        if pid == self.own || !self.looked.insert(pid) {
            return;
        }
        let held = sockets_of(pid, &self.remaining);
        if held.is_empty() {
            return;
        }
        // Gone between the two reads: the sockets stay unattributed.
        let Some((process, parent)) = describe(pid) else {
            return;
        };
        for inode in &held {
            self.remaining.remove(inode);
        }
        // A socket inherited across fork is held by the parent and, until it
        // execs, by the child too. It is the oldest holder's, the one that
        // opened it: go up the parents while they hold it.
        let mut holders = vec![(process, held)];
        let mut parent = parent;
        while parent > 1 && parent != self.own {
            let Some((_, held)) = holders.last() else {
                break;
            };
            let asked: HashSet<u64> = held.iter().copied().collect();
            let also = sockets_of(parent, &asked);
            if also.is_empty() {
                break;
            }
            let Some((process, grandparent)) = describe(parent) else {
                break;
            };
            holders.push((process, also));
            parent = grandparent;
        }
        // Child first, oldest last: the oldest holder's entry wins.
        for (process, held) in holders {
            for inode in held {
                self.found.insert(inode, process.clone());
            }
        }
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
fn describe(pid: u32) -> Option<(Process, u32)> {
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

/// NUL-separated arguments as one line, control characters made visible as
/// `?` (a log line must stay one line), cut at [`CMDLINE_LIMIT`] characters.
fn command_line(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut line: String = text
        .trim_end_matches('\0')
        .chars()
        .map(|c| match c {
            '\0' => ' ',
            c if c.is_control() => '?',
            c => c,
        })
        .take(CMDLINE_LIMIT + 1)
        .collect();
    if line.chars().count() > CMDLINE_LIMIT {
        line = line.chars().take(CMDLINE_LIMIT - 1).collect();
        line.push('…');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_socket_links_start_times_and_command_lines() {
        assert_eq!(socket_inode("socket:[12345]"), Some(12345));
        assert_eq!(socket_inode("pipe:[12345]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
        let stat =
            "4242 (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parent_and_start(stat), Some((1, 987_654)));
        assert_eq!(
            command_line(b"python3\0-c\0print(1)\0"),
            "python3 -c print(1)"
        );
        assert_eq!(command_line(b"evil\nline\0"), "evil?line");
        let long = command_line("x".repeat(500).as_bytes());
        assert_eq!(long.chars().count(), CMDLINE_LIMIT);
        assert!(long.ends_with('…'));
    }
}
