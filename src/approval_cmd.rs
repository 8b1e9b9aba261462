//! `assumed approve [ID]` and `assumed deny [ID]`: answering a `confirm`
//! role's question from a terminal, and the pending questions `status` lists.

use std::process::ExitCode;

use crate::daemon_client::DaemonClient;

/// Answers question `id`, or the only one waiting when `id` is `None`.
pub fn answer(daemon: &DaemonClient, id: Option<u64>, allow: bool) -> Result<ExitCode, String> {
    let id = match id {
        Some(id) => id,
        None => only_question(daemon)?,
    };
    let decision = if allow { "allow" } else { "deny" };
    let path = format!("/admin/approvals/{id}/{decision}");
    let report = daemon.ask("POST", &path, &[])?;
    let text = |key: &str| report[key].as_str().unwrap_or("-").to_owned();
    let (program, pid, role, lasts) =
        (text("program"), &report["pid"], text("role"), text("lasts"));
    match allow {
        true => println!("allowed {program} (pid {pid}) to use role {role} for {lasts}"),
        false => println!("denied {program} (pid {pid}) role {role}; it is refused for {lasts}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn only_question(daemon: &DaemonClient) -> Result<u64, String> {
    let status = daemon.ask("GET", "/admin/status", &[])?;
    let pending = status["approvals"]["pending"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    match pending.as_slice() {
        [] => Err("no question is waiting for an answer".into()),
        [only] => only["id"]
            .as_u64()
            .ok_or_else(|| "the daemon's answer lacks the question's id".into()),
        several => Err(format!(
            "{} questions are waiting; name one:\n{}",
            several.len(),
            lines(several).join("\n")
        )),
    }
}

/// One line per pending question, for `status` and `approve` without an ID.
pub fn lines(pending: &[serde_json::Value]) -> Vec<String> {
    pending
        .iter()
        .map(|question| {
            let text = |key: &str| question[key].as_str().unwrap_or("-");
            format!(
                "  {}: {} (pid {}) asks for role {} — {}",
                question["id"],
                text("exe"),
                question["pid"],
                text("role"),
                text("cmdline")
            )
        })
        .collect()
}
