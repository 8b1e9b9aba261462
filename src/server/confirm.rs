//! The gate in front of a `confirm` role's credentials (docs/security.md,
//! "Ask before prod"): the process asking is identified on the request path
//! — for these roles only — and let through only if the person allowed it
//! (`crate::approval`). A process that cannot be identified (another host,
//! container or network namespace; one already gone) is refused, never let
//! through by default.

use std::sync::Arc;
use std::time::Duration;

use super::connection::Connection;
use super::error::ApiError;
use super::state::AppState;
use crate::approval::{Asked, Program, Refusal};

/// How long a request waits for its process to be found: a full walk over
/// the processes on a loaded machine. The person is slower.
const IDENTIFY_WAIT: Duration = Duration::from_secs(5);

/// `Ok` when `role` has no `confirm`, or the program asking may have it.
pub async fn gate(
    state: &AppState,
    connection: Option<&Connection>,
    role: &str,
) -> Result<(), ApiError> {
    let (confirm, desktop) = {
        let settings = state.settings();
        match settings.confirm.get(role) {
            None => return Ok(()),
            Some(confirm) => (*confirm, settings.ask_on_desktop),
        }
    };
    let program = identify(state, connection).await.map_err(|why| {
        Refusal::NotApproved(format!(
            "role {role} is handed only to programs the person allowed, and {why}"
        ))
    })?;
    let account = state
        .cache
        .role(role)
        .and_then(|spec| spec.config.role_arn)
        .and_then(|arn| crate::arn::account(&arn).map(str::to_owned));
    let asked = Asked {
        role,
        account: account.as_deref(),
        confirm: &confirm,
        desktop,
    };
    state.approvals.admit(&asked, program).await?;
    Ok(())
}

/// The program behind the connection, described for the person; `Err`
/// says why it cannot be.
pub async fn identify(
    state: &AppState,
    connection: Option<&Connection>,
) -> Result<Program, String> {
    let connection = connection.ok_or("the connection's peer is unknown")?;
    let identity = state
        .clients
        .identify(&connection.client, IDENTIFY_WAIT)
        .await
        .ok_or("the process asking could not be found in time")?;
    let (Some(process), Some(uid)) = (identity.process().cloned(), identity.uid()) else {
        return Err(format!(
            "the process asking at {} cannot be identified: it is on another host, in a \
             container or another network namespace, or already gone",
            connection.peer.ip()
        ));
    };
    let approvals = Arc::clone(&state.approvals);
    tokio::task::spawn_blocking(move || crate::approval::describe(&process, uid, &approvals.hashes))
        .await
        .map_err(|_| "the process asking could not be described".to_owned())?
}
