//! Ask before prod: a role with `confirm` goes only to programs the person
//! allowed, the way `ssh-add -c` asks before a key signs.
//!
//! The first request for such a role from a program not yet approved opens
//! a question: a desktop prompt with Allow and Deny (`prompt.rs`), and a
//! line in `assumed status`, where `assumed approve|deny ID` answers it
//! too. Requests of the same program meanwhile join the question instead of
//! opening another. Each request is held for [`HOLD`], less than any SDK's
//! read timeout, and then answered 503 `ApprovalPending`, which every SDK
//! retries; a retry is held again, and the one after the answer is served
//! (or refused). A question nobody answers within `confirm_timeout` lapses:
//! 403 `NotApproved`.
//!
//! An approval covers the program (`program.rs`: executable, its hash, the
//! script) or one process, for `confirm_for`; a denial covers the program
//! for [`DENIAL_LASTS`], so a retry loop gets 403 at once rather than
//! prompting again and again. All of it is in memory only: a restart asks
//! again.
//!
//! Times are tokio's, so the rules run on a paused clock in tests.

mod program;
mod prompt;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::Confirm;
use crate::credentials::format_expiration;
pub use program::{Ancestor, Covered, Hashes, Program, describe};

/// How long one request is held before it is told to retry.
pub const HOLD: Duration = Duration::from_millis(800);
/// How long a denial is remembered for the program.
pub const DENIAL_LASTS: Duration = Duration::from_secs(5 * 60);
/// How long a question that lapsed unanswered is remembered: long enough
/// for the SDK retries still under way to end on its 403, short enough that
/// the person who runs the program again is asked again.
pub const LAPSE_LASTS: Duration = Duration::from_secs(10);

/// What a request asks for: a role with `confirm`.
#[derive(Clone, Copy)]
pub struct Asked<'a> {
    pub role: &'a str,
    /// The role's account, for the prompt.
    pub account: Option<&'a str>,
    pub confirm: &'a Confirm,
    /// Ask on the desktop as well as in `status` (`[server] notify`).
    pub desktop: bool,
}

/// Who answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum By {
    /// The desktop prompt.
    Desktop,
    /// `assumed approve` / `assumed deny`.
    Cli,
}

impl std::fmt::Display for By {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            By::Desktop => "desktop",
            By::Cli => "cli",
        })
    }
}

/// How a question ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Allow(By),
    Deny(By),
    Lapsed,
}

/// Why a request was not let through.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 403 `NotApproved`: denied, lapsed, or not identifiable.
    NotApproved(String),
    /// 503 `ApprovalPending`: asked, not answered yet; retry.
    Pending(String),
}

pub struct Approvals {
    state: Mutex<State>,
    next_id: AtomicU64,
    pub hashes: Hashes,
}

#[derive(Default)]
struct State {
    /// (role, what is covered) → the answer, until it lapses.
    decided: HashMap<(String, Covered), Decided>,
    pending: BTreeMap<u64, Question>,
}

struct Decided {
    answer: Answer,
    at: SystemTime,
    until: Instant,
    program: Arc<Program>,
}

struct Question {
    role: String,
    account: Option<String>,
    covered: Covered,
    program: Arc<Program>,
    asked: SystemTime,
    answer: watch::Sender<Option<Answer>>,
    /// What `confirm_for` the role had when it was asked.
    lasts: Duration,
}

/// A question waiting for an answer, as `status --json` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PendingStatus {
    pub id: u64,
    pub role: String,
    pub account: Option<String>,
    pub asked: String,
    #[serde(flatten)]
    pub program: Program,
}

/// An answer in force, as `status --json` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct DecidedStatus {
    pub role: String,
    /// `allow`, `deny`, or `none` (lapsed unanswered).
    pub decision: &'static str,
    pub by: Option<By>,
    pub at: String,
    pub until: String,
    pub exe: String,
    pub sha256: String,
    pub script: Option<String>,
    pub uid: u32,
    pub pid: u32,
}

impl Approvals {
    pub fn new() -> Arc<Approvals> {
        Arc::new(Approvals {
            state: Mutex::new(State::default()),
            next_id: AtomicU64::new(1),
            hashes: Hashes::default(),
        })
    }

    /// Lets `program` have `asked.role` if the person allowed it, asking if
    /// nobody has; holds the request at most [`HOLD`].
    pub async fn admit(
        self: &Arc<Self>,
        asked: &Asked<'_>,
        program: Program,
    ) -> Result<(), Refusal> {
        let Asked { role, confirm, .. } = *asked;
        let covered = program.covered(confirm.scope);
        let (id, mut answer) = {
            let mut state = self.state.lock();
            let key = (role.to_owned(), covered.clone());
            let now = Instant::now();
            state.decided.retain(|_, decided| decided.until > now);
            if let Some(decided) = state.decided.get(&key) {
                return match decided.answer {
                    Answer::Allow(_) => Ok(()),
                    Answer::Deny(by) => Err(denied(role, &program, by, decided.until - now)),
                    Answer::Lapsed => Err(lapsed(role, &program, confirm)),
                };
            }
            let open = state
                .pending
                .iter()
                .find(|(_, question)| question.role == role && question.covered == covered);
            match open {
                Some((&id, question)) => (id, question.answer.subscribe()),
                None => self.ask(&mut state, asked, program.clone(), covered),
            }
        };
        let answered = tokio::time::timeout(HOLD, answer.wait_for(Option::is_some)).await;
        let Ok(Ok(answer)) = answered else {
            return Err(Refusal::Pending(format!(
                "waiting for the person to allow {} (pid {}) to use role {role}: answer the \
                 desktop prompt, or run `assumed approve {id}` or `assumed deny {id}`",
                program.name(),
                program.pid
            )));
        };
        match *answer {
            Some(Answer::Allow(_)) => Ok(()),
            Some(Answer::Deny(by)) => Err(denied(role, &program, by, DENIAL_LASTS)),
            Some(Answer::Lapsed) | None => Err(lapsed(role, &program, confirm)),
        }
    }

    /// Opens a question: remembered, announced, prompted for, and lapsing
    /// after the role's `confirm_timeout`.
    fn ask(
        self: &Arc<Self>,
        state: &mut State,
        asked: &Asked<'_>,
        program: Program,
        covered: Covered,
    ) -> (u64, watch::Receiver<Option<Answer>>) {
        let Asked {
            role,
            account,
            confirm,
            desktop,
        } = *asked;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer, waiting) = watch::channel(None);
        let program = Arc::new(program);
        tracing::info!(
            id,
            role = %role,
            pid = program.pid,
            exe = %program.exe,
            "a program asks for a confirm role; waiting for the person"
        );
        let question = Question {
            role: role.to_owned(),
            account: account.map(str::to_owned),
            covered,
            program: program.clone(),
            asked: SystemTime::now(),
            answer,
            lasts: confirm.lasts,
        };
        if desktop {
            let text = prompt::Text::new(id, role, account, &program, confirm.timeout);
            let approvals = self.clone();
            let closed = question.answer.subscribe();
            tokio::spawn(async move {
                if let Some(allow) = prompt::ask(&text, closed).await {
                    // Answered in a terminal meanwhile: that answer stands.
                    let _ = approvals.answer(id, allow, By::Desktop);
                }
            });
        }
        state.pending.insert(id, question);
        let approvals = self.clone();
        let timeout = confirm.timeout;
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            approvals.lapse(id);
        });
        (id, waiting)
    }

    /// The person's answer to question `id`. `Err` when there is no such
    /// question (answered already, or lapsed).
    pub fn answer(&self, id: u64, allow: bool, by: By) -> Result<AnswerReport, String> {
        let mut state = self.state.lock();
        let question = state
            .pending
            .remove(&id)
            .ok_or_else(|| format!("no question {id} is waiting for an answer"))?;
        let lasts = if allow { question.lasts } else { DENIAL_LASTS };
        let program = &question.program;
        tracing::info!(
            id,
            role = %question.role,
            exe = %program.exe,
            pid = program.pid,
            decision = if allow { "allow" } else { "deny" },
            by = %by,
            "a confirm role's question is answered"
        );
        let answer = match allow {
            true => Answer::Allow(by),
            false => Answer::Deny(by),
        };
        state.decided.insert(
            (question.role.clone(), question.covered.clone()),
            Decided {
                answer,
                at: SystemTime::now(),
                until: Instant::now() + lasts,
                program: program.clone(),
            },
        );
        question.answer.send_replace(Some(answer));
        Ok(AnswerReport {
            role: question.role,
            program: program.name().to_owned(),
            pid: program.pid,
            lasts,
        })
    }

    /// Question `id`'s program, if it is still waiting: for the check that
    /// a program does not answer for itself.
    pub fn asker(&self, id: u64) -> Option<Arc<Program>> {
        self.state
            .lock()
            .pending
            .get(&id)
            .map(|question| question.program.clone())
    }

    fn lapse(&self, id: u64) {
        let mut state = self.state.lock();
        let Some(question) = state.pending.remove(&id) else {
            return;
        };
        state.decided.insert(
            (question.role.clone(), question.covered.clone()),
            Decided {
                answer: Answer::Lapsed,
                at: SystemTime::now(),
                until: Instant::now() + LAPSE_LASTS,
                program: question.program.clone(),
            },
        );
        tracing::info!(
            id,
            role = %question.role,
            exe = %question.program.exe,
            pid = question.program.pid,
            decision = "none",
            "a confirm role's question lapsed unanswered"
        );
        question.answer.send_replace(Some(Answer::Lapsed));
    }

    /// Questions waiting, oldest first.
    pub fn pending(&self) -> Vec<PendingStatus> {
        self.state
            .lock()
            .pending
            .iter()
            .map(|(&id, question)| PendingStatus {
                id,
                role: question.role.clone(),
                account: question.account.clone(),
                asked: format_expiration(question.asked),
                program: (*question.program).clone(),
            })
            .collect()
    }

    /// Answers in force.
    pub fn decided(&self) -> Vec<DecidedStatus> {
        let now = Instant::now();
        let wall = SystemTime::now();
        let mut decided: Vec<DecidedStatus> = self
            .state
            .lock()
            .decided
            .iter()
            .filter(|(_, decided)| decided.until > now)
            .map(|((role, _), decided)| DecidedStatus {
                role: role.clone(),
                decision: match decided.answer {
                    Answer::Allow(_) => "allow",
                    Answer::Deny(_) => "deny",
                    Answer::Lapsed => "none",
                },
                by: match decided.answer {
                    Answer::Allow(by) | Answer::Deny(by) => Some(by),
                    Answer::Lapsed => None,
                },
                at: format_expiration(decided.at),
                until: format_expiration(wall + (decided.until - now)),
                exe: decided.program.exe.clone(),
                sha256: decided.program.sha256.clone(),
                script: decided.program.script.clone(),
                uid: decided.program.uid,
                pid: decided.program.pid,
            })
            .collect();
        decided.sort_by(|a, b| a.at.cmp(&b.at));
        decided
    }
}

/// What an answer did, for the CLI's reply.
#[derive(Debug, Serialize)]
pub struct AnswerReport {
    pub role: String,
    pub program: String,
    pub pid: u32,
    #[serde(serialize_with = "as_text")]
    pub lasts: Duration,
}

fn as_text<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&humantime::format_duration(*duration).to_string())
}

fn lapsed(role: &str, program: &Program, confirm: &Confirm) -> Refusal {
    Refusal::NotApproved(format!(
        "nobody allowed {} (pid {}) to use role {role} within confirm_timeout ({})",
        program.name(),
        program.pid,
        humantime::format_duration(confirm.timeout)
    ))
}

fn denied(role: &str, program: &Program, by: By, left: Duration) -> Refusal {
    let by = match by {
        By::Desktop => "on the desktop",
        By::Cli => "with `assumed deny`",
    };
    let left = Duration::from_secs(left.as_secs().max(1));
    Refusal::NotApproved(format!(
        "the person denied {} (pid {}) role {role} {by}; it is refused for the next {}",
        program.name(),
        program.pid,
        humantime::format_duration(left)
    ))
}

#[cfg(test)]
mod tests;
