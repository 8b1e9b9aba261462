//! The STS calls that make a role's session: `AssumeRole` with every
//! per-role parameter, and `AssumeRoleWithWebIdentity` for web-identity
//! profiles.

use std::path::Path;
use std::time::Instant;

use aws_sdk_sts::types::{PolicyDescriptorType, Tag};

use super::describe::Call;
use super::mfa::MfaProof;
use super::{Sts, classify, issued, record_call, session_duration, signing};
use crate::cache::{FetchError, RoleSpec};
use crate::credentials::Issued;

impl Sts {
    pub(super) async fn assume_role(
        &self,
        role: &RoleSpec,
        upstream: Option<&Issued>,
    ) -> Result<Issued, FetchError> {
        let config = &role.config;
        let role_arn = config.role_arn.as_deref().unwrap_or_default();
        let mfa = self.mfa_for(role).await?;
        let signer = match (&mfa, upstream) {
            (Some(MfaProof::Session(session)), _) => signing(session),
            (_, Some(upstream)) => signing(upstream),
            (_, None) => self.source_credentials(role).await?,
        };
        let client = self.client(role, Some(signer)).await;
        let mut request = client
            .assume_role()
            .role_arn(role_arn)
            .role_session_name(role.session_name())
            .set_duration_seconds(session_duration(role).map(|d| d.as_secs() as i32))
            .set_external_id(config.external_id.as_ref().map(|id| id.expose().to_owned()))
            .set_policy(config.policy.clone())
            .set_source_identity(config.source_identity.clone());
        for arn in &config.policy_arns {
            request = request.policy_arns(PolicyDescriptorType::builder().arn(arn).build());
        }
        for (key, value) in &config.tags {
            let tag = Tag::builder()
                .key(key)
                .value(value)
                .build()
                .map_err(|e| FetchError::permanent("InvalidTag", format!("tag {key}: {e}")))?;
            request = request.tags(tag);
        }
        for key in &config.transitive_tag_keys {
            request = request.transitive_tag_keys(key);
        }
        if let Some(MfaProof::Code { serial, code }) = &mfa {
            request = request.serial_number(serial).token_code(code.expose());
        }
        let call = Call::new("AssumeRole", self.deadlines());
        let started = Instant::now();
        let sent = request.customize().interceptor(call.watch()).send().await;
        record_call(&role.name, "AssumeRole", started, sent.as_ref().err());
        let output = sent.map_err(|error| classify(&role.name, &call, error))?;
        let assumed = output.assumed_role_user().map(|user| user.arn());
        issued(output.credentials(), role_arn, assumed.unwrap_or_default())
    }

    pub(super) async fn assume_role_with_web_identity(
        &self,
        role: &RoleSpec,
        token_file: &Path,
    ) -> Result<Issued, FetchError> {
        let token = tokio::fs::read_to_string(token_file)
            .await
            .map_err(|error| {
                FetchError::needs_user(
                    "WebIdentityTokenUnavailable",
                    format!(
                        "role {}: the web identity token file {} cannot be read ({})",
                        role.name,
                        token_file.display(),
                        error.kind()
                    ),
                )
            })?;
        let role_arn = role.config.role_arn.as_deref().unwrap_or_default();
        // AssumeRoleWithWebIdentity is unsigned: the token is the proof.
        let client = self.client(role, None).await;
        let call = Call::new("AssumeRoleWithWebIdentity", self.deadlines());
        let started = Instant::now();
        let sent = client
            .assume_role_with_web_identity()
            .role_arn(role_arn)
            .role_session_name(role.session_name())
            .web_identity_token(token.trim())
            .set_duration_seconds(session_duration(role).map(|d| d.as_secs() as i32))
            .customize()
            .interceptor(call.watch())
            .send()
            .await;
        record_call(
            &role.name,
            "AssumeRoleWithWebIdentity",
            started,
            sent.as_ref().err(),
        );
        let output = sent.map_err(|error| classify(&role.name, &call, error))?;
        let assumed = output.assumed_role_user().map(|user| user.arn());
        issued(output.credentials(), role_arn, assumed.unwrap_or_default())
    }
}
