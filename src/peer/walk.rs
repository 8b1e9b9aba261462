//! Socket → process: one walk over the processes finds every socket asked
//! for and stops as soon as it has. The order and the fork rule are the
//! same on every system; what differs is how a process's sockets and
//! details are read ([`Processes`]: `/proc` on Linux in `process.rs`,
//! libproc on macOS in `macos.rs`).
//!
//! The walk looks first at the processes that held sockets before (a
//! long-lived SDK opening another connection), then at the newest processes
//! of the sockets' users (a client that just connected is usually among the
//! newest, and a one-shot `curl` must be found while it still waits for its
//! answer), then at everything else. Processes of other users are looked at
//! last: only root may read their fds, and a socket's user is nearly always
//! its process's.

use std::collections::{HashMap, HashSet};

use super::{Process, SocketOwner};

/// What the walk needs to know about the system's processes.
pub(super) trait Processes {
    /// Every pid, the most recently started first.
    fn newest_first(&self) -> Vec<u32>;
    /// The process's user; `None` when it is gone.
    fn uid_of(&self, pid: u32) -> Option<u32>;
    /// Which of `wanted` (socket ids: inodes on Linux, the kernel's socket
    /// handles on macOS) the process holds; nothing when its fds are not
    /// ours to read.
    fn sockets_of(&self, pid: u32, wanted: &HashSet<u64>) -> Vec<u64>;
    /// The process, and its parent's pid; `None` when it is gone.
    fn describe(&self, pid: u32) -> Option<(Process, u32)>;
}

/// The processes holding these sockets: the `likely` pids first, then the
/// sockets' users' newest processes (only the `reach` newest, if given),
/// then everyone else's (not when `reach` is given). Sockets whose process
/// is gone or may not be read are missing from the answer.
pub(super) fn holding(
    processes: &impl Processes,
    sockets: &[SocketOwner],
    likely: &[u32],
    reach: Option<usize>,
) -> HashMap<u64, Process> {
    let mut walk = Walk {
        processes,
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
    // Not skipped: a process that changed its user after connecting still
    // holds the socket, and as root its fds are readable.
    let mut others = Vec::new();
    let mut left = reach.unwrap_or(usize::MAX);
    for pid in processes.newest_first() {
        if walk.done() || left == 0 {
            return walk.found;
        }
        match processes.uid_of(pid) {
            Some(uid) if users.contains(&uid) => {
                walk.look(pid);
                left -= 1;
            }
            Some(_) => others.push(pid),
            None => {}
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

struct Walk<'a, P> {
    processes: &'a P,
    own: u32,
    /// Sockets not found yet.
    remaining: HashSet<u64>,
    found: HashMap<u64, Process>,
    looked: HashSet<u32>,
}

impl<P: Processes> Walk<'_, P> {
    fn done(&self) -> bool {
        self.remaining.is_empty()
    }

    fn look(&mut self, pid: u32) {
        if pid == self.own || !self.looked.insert(pid) {
            return;
        }
        let held = self.processes.sockets_of(pid, &self.remaining);
        if held.is_empty() {
            return;
        }
        // Gone between the two reads: the sockets stay unattributed.
        let Some((process, parent)) = self.processes.describe(pid) else {
            return;
        };
        for socket in &held {
            self.remaining.remove(socket);
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
            let also = self.processes.sockets_of(parent, &asked);
            if also.is_empty() {
                break;
            }
            let Some((process, grandparent)) = self.processes.describe(parent) else {
                break;
            };
            holders.push((process, also));
            parent = grandparent;
        }
        // Child first, oldest last: the oldest holder's entry wins.
        for (process, held) in holders {
            for socket in held {
                self.found.insert(socket, process.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process table: pid → (uid, parent, sockets held), newest pid first.
    struct Table(Vec<(u32, u32, u32, Vec<u64>)>);

    impl Processes for Table {
        fn newest_first(&self) -> Vec<u32> {
            self.0.iter().map(|(pid, ..)| *pid).collect()
        }
        fn uid_of(&self, pid: u32) -> Option<u32> {
            self.0.iter().find(|p| p.0 == pid).map(|p| p.1)
        }
        fn sockets_of(&self, pid: u32, wanted: &HashSet<u64>) -> Vec<u64> {
            let Some((.., held)) = self.0.iter().find(|p| p.0 == pid) else {
                return Vec::new();
            };
            held.iter()
                .copied()
                .filter(|s| wanted.contains(s))
                .collect()
        }
        fn describe(&self, pid: u32) -> Option<(Process, u32)> {
            let (_, _, parent, _) = self.0.iter().find(|p| p.0 == pid)?;
            let process = Process {
                pid,
                started: u64::from(pid) * 10,
                exe: format!("/bin/p{pid}"),
                cmdline: format!("p{pid}"),
            };
            Some((process, *parent))
        }
    }

    fn socket(uid: u32, inode: u64) -> SocketOwner {
        SocketOwner { uid, inode }
    }

    #[test]
    fn a_socket_shared_across_fork_is_its_oldest_holders() {
        // 30 forked 40, which forked 50; all three hold socket 7, and 50
        // (the newest) is met first.
        let table = Table(vec![
            (50, 1000, 40, vec![7]),
            (40, 1000, 30, vec![7]),
            (30, 1000, 1, vec![7, 8]),
            (20, 1000, 1, vec![9]),
        ]);
        let found = holding(&table, &[socket(1000, 7), socket(1000, 9)], &[], None);
        assert_eq!(found[&7].pid, 30);
        assert_eq!(found[&9].pid, 20);
        // Its parent is asked only about the sockets its child holds.
        assert!(!found.contains_key(&8));
    }

    #[test]
    fn the_reach_bounds_a_quick_look_to_the_users_newest_processes() {
        let table = Table(vec![
            (60, 0, 1, vec![]),
            (50, 1000, 1, vec![]),
            (40, 1000, 1, vec![]),
            (30, 1000, 1, vec![5]),
            (20, 2000, 1, vec![6]),
        ]);
        let sockets = [socket(1000, 5), socket(1000, 6)];
        assert!(holding(&table, &sockets, &[], Some(2)).is_empty());
        // The remembered pids come first, outside the reach.
        assert_eq!(holding(&table, &sockets, &[30], Some(2))[&5].pid, 30);
        let full = holding(&table, &sockets, &[], None);
        assert_eq!(full[&5].pid, 30);
        // Another user's process is looked at last, but looked at.
        assert_eq!(full[&6].pid, 20);
    }
}
