//! The server's `Upstream`, answered by `Sts`: the server asks what signs
//! for a role without naming STS, and this is the one place the two meet.

use crate::cache::{FetchError, RoleSpec};
use crate::credentials::Issued;
use crate::server::upstream::{
    Identity, KeysReloaded, MfaUse, Origin, Pending, SourceCheck, StsEndpoint, Upstream,
};
use crate::sts::{self, Sts};

impl Upstream for Sts {
    fn origin(&self, role: &RoleSpec) -> Origin {
        let origin = Sts::origin(self, role);
        Origin {
            kind: origin.kind(),
            explanation: origin.explanation(&role.name),
        }
    }

    fn sts_endpoint<'a>(&'a self, role: &'a RoleSpec) -> Pending<'a, StsEndpoint> {
        Box::pin(async move {
            let (url, from) = self.endpoint_named(role).await;
            StsEndpoint { url, from }
        })
    }

    fn check_source<'a>(&'a self, role: Option<&'a RoleSpec>) -> Pending<'a, SourceCheck> {
        Box::pin(async move {
            let report = Sts::check_source(self, role).await;
            SourceCheck {
                source: report.source,
                outcome: report.outcome.map(|identity| Identity {
                    arn: identity.arn,
                    expires: identity.expires,
                }),
                clock_skew_seconds: report.clock_skew_seconds,
            }
        })
    }

    fn provide_mfa<'a>(
        &'a self,
        role: &'a RoleSpec,
        code: &'a str,
    ) -> Pending<'a, Result<MfaUse, FetchError>> {
        Box::pin(async move {
            Sts::provide_mfa(self, role, code)
                .await
                .map(|used| match used {
                    sts::MfaUse::Session { until } => MfaUse::Session { until },
                    sts::MfaUse::OneTimeCode => MfaUse::OneTimeCode,
                })
        })
    }

    fn forget_mfa(&self) -> Result<usize, String> {
        Sts::forget_mfa(self)
    }

    fn keyring_status(&self) -> Option<serde_json::Value> {
        let status = Sts::keyring_status(self)?;
        serde_json::to_value(status).ok()
    }

    fn reload_keys<'a>(&'a self, roles: Vec<RoleSpec>) -> Pending<'a, KeysReloaded> {
        Box::pin(async move {
            let report = self.read_keys().await;
            KeysReloaded {
                message: report.summary(),
                trouble: report.trouble.is_some(),
                refetch: self.roles_on_keys(&roles, &report.changed),
            }
        })
    }

    fn keys_session<'a>(
        &'a self,
        name: &'a str,
        roles: Vec<RoleSpec>,
    ) -> Pending<'a, Result<Issued, FetchError>> {
        Box::pin(async move { Sts::keys_session(self, name, &roles).await })
    }
}
