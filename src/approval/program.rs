//! The program behind a request for a `confirm` role, as the person is asked
//! about it and as an approval remembers it.
//!
//! What an approval covers (`confirm = "once-per-program"`) is the
//! executable — its path and a SHA-256 of its content, so a binary swapped
//! in at the same path is a new program — and, for an interpreter, the
//! script it runs: approving `python3 deploy.py` must not approve every
//! Python script, least of all a package's install script under `npm`.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use parking_lot::Mutex;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::ConfirmScope;
use crate::peer::{self, Process};

/// How many ancestors the prompt shows, from the parent up.
const PARENTS_SHOWN: usize = 6;

/// Executables whose program is the script they run.
const INTERPRETERS: [&str; 14] = [
    "python", "node", "nodejs", "ruby", "perl", "php", "bash", "sh", "dash", "zsh", "fish", "ksh",
    "deno", "bun",
];

/// A process that asks, and what the person needs to judge it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Program {
    pub pid: u32,
    #[serde(skip)]
    pub started: u64,
    pub uid: u32,
    pub exe: String,
    pub sha256: String,
    /// The script an interpreter runs (a path, or `-c CODE`, `-m MODULE`).
    pub script: Option<String>,
    pub cmdline: String,
    /// Its parent, the parent's parent…, up to the shell or a session leader.
    pub parents: Vec<Ancestor>,
}

/// One process in the chain that started the asking one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ancestor {
    pub pid: u32,
    pub exe: String,
    pub cmdline: String,
}

/// What one approval covers (see `ConfirmScope`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Covered {
    Program {
        uid: u32,
        exe: String,
        sha256: String,
        script: Option<String>,
    },
    Process {
        pid: u32,
        started: u64,
    },
}

impl Program {
    /// What an approval of this program covers under `scope`.
    pub fn covered(&self, scope: ConfirmScope) -> Covered {
        match scope {
            ConfirmScope::Program => Covered::Program {
                uid: self.uid,
                exe: self.exe.clone(),
                sha256: self.sha256.clone(),
                script: self.script.clone(),
            },
            ConfirmScope::Process => Covered::Process {
                pid: self.pid,
                started: self.started,
            },
        }
    }

    /// The executable's file name, for short messages.
    pub fn name(&self) -> &str {
        self.exe.rsplit('/').next().unwrap_or(&self.exe)
    }

    /// Command lines with `secret` (the daemon's token, which `curl -H`
    /// puts on one) shown as `<redacted>`.
    pub fn hide(&mut self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        self.cmdline = self.cmdline.replace(secret, "<redacted>");
        for parent in &mut self.parents {
            parent.cmdline = parent.cmdline.replace(secret, "<redacted>");
        }
    }

    /// Whether `other` is this process or one it started (directly or not).
    pub fn is_or_started(&self, other: &Program) -> bool {
        other.pid == self.pid && other.started == self.started
            || other.parents.iter().any(|parent| parent.pid == self.pid)
    }
}

/// Content hashes of executables, by file identity and change time: a
/// program asking again is not read again.
#[derive(Default)]
pub struct Hashes {
    known: Mutex<HashMap<FileVersion, String>>,
}

/// A file as it is now: device, inode, size, modification time (s, ns).
type FileVersion = (u64, u64, u64, i64, i64);

/// Entries kept before the cache starts over.
const HASHES_KEPT: usize = 256;

impl Hashes {
    fn of(&self, file: &Path) -> Result<String, String> {
        use std::os::unix::fs::MetadataExt;
        let unreadable = |e: std::io::Error| format!("cannot read {}: {e}", file.display());
        let meta = std::fs::metadata(file).map_err(unreadable)?;
        let identity = (
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec(),
        );
        if let Some(hash) = self.known.lock().get(&identity) {
            return Ok(hash.clone());
        }
        let mut reader = std::fs::File::open(file).map_err(unreadable)?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0; 1 << 16];
        loop {
            let read = reader.read(&mut buffer).map_err(unreadable)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
        }
        let hash = hex::encode(hasher.finalize());
        let mut known = self.known.lock();
        if known.len() >= HASHES_KEPT {
            known.clear();
        }
        known.insert(identity, hash.clone());
        Ok(hash)
    }
}

/// Describes `process` of user `uid`: its executable's hash, the script it
/// runs, its parents. Blocking (reads files); an `Err` says why it cannot
/// be described, which refuses it.
pub fn describe(process: &Process, uid: u32, hashes: &Hashes) -> Result<Program, String> {
    let sha256 = hashes.of(&peer::executable_file(process))?;
    Ok(Program {
        pid: process.pid,
        started: process.started,
        uid,
        exe: process.exe.clone(),
        sha256,
        script: script(&process.exe, &process.cmdline, process.pid),
        cmdline: process.cmdline.clone(),
        parents: parents(process.pid),
    })
}

/// The script an interpreter runs: the first argument that is not an
/// option, made absolute against the process's working directory; or the
/// code or module of `-c`, `-e`, `-m`. `None` for other programs.
fn script(exe: &str, cmdline: &str, pid: u32) -> Option<String> {
    let name = exe.rsplit('/').next().unwrap_or(exe);
    let interpreted = INTERPRETERS.iter().any(|interpreter| {
        name.strip_prefix(interpreter)
            .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit() || c == '.'))
    });
    if !interpreted {
        return None;
    }
    let mut args = cmdline.split(' ').skip(1);
    while let Some(arg) = args.next() {
        match arg {
            "-c" | "-e" | "-m" | "--eval" => {
                let rest: Vec<&str> = args.collect();
                return Some(format!("{arg} {}", rest.join(" ")));
            }
            option if option.starts_with('-') => continue,
            path if path.starts_with('/') => return Some(path.to_owned()),
            relative => {
                let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
                return Some(match cwd {
                    Some(cwd) => cwd.join(relative).display().to_string(),
                    None => relative.to_owned(),
                });
            }
        }
    }
    // An interpreter reading its program from stdin or a terminal.
    Some(String::new())
}

/// The chain of parents, nearest first: up to an interactive shell (which
/// is shown), the first process of another user, or init.
fn parents(pid: u32) -> Vec<Ancestor> {
    let mut chain = Vec::new();
    let mut next = peer::describe(pid).map(|(_, parent)| parent);
    while let Some(pid) = next.filter(|&pid| pid > 1) {
        let Some((process, parent)) = peer::describe(pid) else {
            break;
        };
        let shell = is_shell(&process.exe);
        chain.push(Ancestor {
            pid,
            exe: process.exe,
            cmdline: process.cmdline,
        });
        if shell || chain.len() == PARENTS_SHOWN {
            break;
        }
        next = Some(parent);
    }
    chain
}

fn is_shell(exe: &str) -> bool {
    let name = exe.rsplit('/').next().unwrap_or(exe);
    ["bash", "zsh", "fish", "sh", "dash", "ksh", "tcsh", "nu"].contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interpreters_program_is_its_script() {
        assert_eq!(
            script("/usr/bin/python3.11", "python3 -u /srv/deploy.py --prod", 0),
            Some("/srv/deploy.py".into())
        );
        assert_eq!(
            script("/usr/bin/node", "node -e console.log(1)", 0),
            Some("-e console.log(1)".into())
        );
        assert_eq!(
            script("/usr/bin/python3", "/usr/bin/python3 /usr/bin/aws s3 ls", 0),
            Some("/usr/bin/aws".into())
        );
        assert_eq!(script("/usr/bin/terraform", "terraform plan", 0), None);
        assert_eq!(script("/usr/bin/nodemon", "nodemon x.js", 0), None);
        assert_eq!(
            script("/usr/bin/python3", "python3", 0),
            Some(String::new())
        );
    }

    #[test]
    fn this_test_process_is_described_with_its_hash_and_parents() {
        let me = std::process::id();
        let (process, _) = peer::describe(me).expect("this process");
        let hashes = Hashes::default();
        let program = describe(&process, 0, &hashes).expect("described");
        assert_eq!(program.sha256.len(), 64);
        assert!(!program.parents.is_empty(), "cargo test has a parent");
        assert_eq!(
            describe(&process, 0, &hashes).unwrap().sha256,
            program.sha256,
            "the same again"
        );
        let child = Program {
            pid: 0,
            started: 0,
            parents: vec![Ancestor {
                pid: me,
                exe: String::new(),
                cmdline: String::new(),
            }],
            ..program.clone()
        };
        assert!(program.is_or_started(&program));
        assert!(program.is_or_started(&child));
        assert!(!child.is_or_started(&program));
    }
}
