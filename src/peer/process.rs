//! Socket inode → process: the `/proc/<pid>/fd` links that read
//! `socket:[inode]`. One walk finds every inode asked for, newest processes
//! first (a client that just connected is usually among them), and stops
//! once all are found. Processes of other users are skipped unless we may
//! read their fds (root may).

use std::collections::{HashMap, HashSet};
use std::fs;

use super::{CMDLINE_LIMIT, Process};

pub fn holding(inodes: &[u64]) -> HashMap<u64, Process> {
    let wanted: HashSet<u64> = inodes.iter().copied().collect();
    let mut found = HashMap::new();
    let own = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    let pids: Vec<u32> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .filter(|&pid| pid != own)
        .collect();
    // Every holder is looked at: a socket inherited across fork is held by
    // the parent and, until it execs, by the child too. It is the oldest
    // holder's, the one that opened it.
    for pid in pids {
        let held = sockets_of(pid, &wanted);
        if held.is_empty() {
            continue;
        }
        // Gone between the two reads: the sockets stay unattributed.
        let Some(process) = describe(pid) else {
            continue;
        };
        for inode in held {
            let older = found
                .get(&inode)
                .is_none_or(|known: &Process| process.started < known.started);
            if older {
                found.insert(inode, process.clone());
            }
        }
    }
    found
}

/// Which of `wanted` the process holds; nothing when its fds are not ours to read.
fn sockets_of(pid: u32, wanted: &HashSet<u64>) -> Vec<u64> {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter_map(|fd| fs::read_link(fd.path()).ok())
        .filter_map(|target| socket_inode(target.to_str()?))
        .filter(|inode| wanted.contains(inode))
        .collect()
}

fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

fn describe(pid: u32) -> Option<Process> {
    let started = start_time(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    let exe = fs::read_link(format!("/proc/{pid}/exe"))
        .map(|path| path.display().to_string())
        .unwrap_or_default();
    let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| command_line(&raw))
        .unwrap_or_default();
    Some(Process {
        pid,
        started,
        exe,
        cmdline,
    })
}

/// Field 22 of `/proc/<pid>/stat`, counted after the parenthesised command
/// name (which may itself hold spaces and parentheses).
fn start_time(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_ascii_whitespace().nth(19)?.parse().ok()
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
        assert_eq!(start_time(stat), Some(987_654));
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
