//! What every handler can reach: the cache, the token, the upstream for the
//! admin endpoints, and the settings of the moment. What a reload may change
//! is one immutable [`Settings`] snapshot behind an `ArcSwap`; the rest is
//! fixed for the process's life.

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use tokio::sync::mpsc;

use super::control::Control;
use super::session_token::SessionTokens;
use super::settings::Settings;
use super::upstream::Upstream;
use crate::approval::Approvals;
use crate::cache::Cache;
use crate::clients::Clients;

pub struct AppState {
    pub cache: Cache,
    /// For the admin endpoints that ask what signs for a role (`console`,
    /// `doctor`'s source check, `mfa`) rather than for credentials.
    pub upstream: Arc<dyn Upstream>,
    pub session_tokens: SessionTokens,
    /// Who took each role's credentials.
    pub clients: Clients,
    /// Who may have the `confirm` roles, and the questions waiting.
    pub approvals: Arc<Approvals>,
    /// Serve `/metrics`.
    pub metrics: bool,
    /// Serve `/__bench/static` (scripts/bench's baseline).
    pub bench_static: bool,
    /// The admin endpoints' line to the main loop (reload).
    pub control: mpsc::Sender<Control>,
    settings: ArcSwap<Settings>,
}

/// What the daemon decides once at start and a reload does not change.
pub struct Fixed {
    pub metrics: bool,
    pub bench_static: bool,
}

impl AppState {
    /// The state, and the receiving end of its admin requests (the daemon's
    /// main loop answers them).
    pub fn new(
        cache: Cache,
        upstream: Arc<dyn Upstream>,
        clients: Clients,
        settings: Settings,
        fixed: Fixed,
    ) -> std::io::Result<(Arc<AppState>, mpsc::Receiver<Control>)> {
        let (control, requests) = mpsc::channel(4);
        let state = AppState {
            cache,
            upstream,
            session_tokens: SessionTokens::new()?,
            clients,
            approvals: Approvals::new(),
            metrics: fixed.metrics,
            bench_static: fixed.bench_static,
            control,
            settings: ArcSwap::from_pointee(settings),
        };
        Ok((Arc::new(state), requests))
    }

    /// The settings now. Cheap (no lock, no reference count); hold it for
    /// one request's checks, not across an `.await`.
    pub fn settings(&self) -> Guard<Arc<Settings>> {
        self.settings.load()
    }

    /// A reload's new settings, all at once.
    pub fn replace_settings(&self, settings: Settings) {
        self.settings.store(Arc::new(settings));
    }

    pub fn default_role(&self) -> Option<String> {
        self.settings().default_role.clone()
    }
}
