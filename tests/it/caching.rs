//! The cache against a real STS: single flight, refresh ahead of expiry,
//! outages and refusals, counted at the proxy in front of moto.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use crate::harness::{Daemon, Fault, Options, StsProxy, parse_utc_timestamp, raw_answer, raw_send};

const DEV: &str = r#"
[roles.dev]
role_arn = "arn:aws:iam::111111111111:role/dev"
"#;

/// Polls `dev` until `done` says so or `limit` passes; every answer is checked
/// on the way: a 200 must carry credentials that have not expired.
async fn poll_until(
    daemon: &Daemon,
    limit: Duration,
    mut done: impl FnMut(u16, &serde_json::Value) -> bool,
) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let answer = daemon.get("/role/dev").await;
        let json = answer.json();
        if answer.status == 200 {
            let expiration = json["Expiration"].as_str().and_then(parse_utc_timestamp);
            let expiration = expiration.expect("a parseable Expiration");
            assert!(
                expiration > SystemTime::now(),
                "served expired credentials: {json}"
            );
        }
        if done(answer.status, &json) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn concurrent_cold_requests_make_exactly_one_sts_call() {
    const CALLERS: usize = 150;
    let proxy = StsProxy::start().await;
    // Hold STS's answer until every request is inside the daemon.
    proxy.hold();
    let daemon = Daemon::start(&proxy.url(), DEV).await;
    let request = format!(
        "GET /role/dev HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        daemon.token()
    );
    let mut sent = Vec::with_capacity(CALLERS);
    for _ in 0..CALLERS {
        sent.push(raw_send(daemon.port, request.as_bytes()).await);
    }
    assert!(
        daemon
            .wait_requests_read(CALLERS, Duration::from_secs(20))
            .await,
        "the daemon read every request"
    );
    assert!(
        proxy
            .wait_for("AssumeRole", 1, Duration::from_secs(20))
            .await,
        "the first request went to STS"
    );
    assert_eq!(
        proxy.count("AssumeRole"),
        1,
        "single flight while in flight"
    );
    proxy.release();
    let answers: Vec<_> = sent
        .into_iter()
        .map(|stream| tokio::spawn(raw_answer(stream)))
        .collect();
    let mut keys = HashSet::new();
    for answer in answers {
        let (status, body) = answer.await.expect("task");
        assert_eq!(status, 200, "{body}");
        let body: serde_json::Value = serde_json::from_str(&body).expect("json");
        keys.insert(body["AccessKeyId"].as_str().expect("key").to_owned());
    }
    assert_eq!(proxy.count("AssumeRole"), 1, "single flight");
    assert_eq!(keys.len(), 1, "every caller got the one set of credentials");
}

#[tokio::test]
async fn credentials_rotate_before_expiry_while_clients_poll() {
    let proxy = StsProxy::start().await;
    // 20 s sessions: the daemon refreshes at half-life, ~10 s in.
    proxy.set_expiration(Some(Duration::from_secs(20)));
    let daemon =
        Daemon::start_with(Options::new(&proxy.url(), DEV).server("refresh_before = \"10s\""))
            .await;
    let mut keys = HashSet::new();
    let rotated = poll_until(&daemon, Duration::from_secs(40), |status, json| {
        assert_eq!(status, 200, "healthy STS, so always served: {json}");
        keys.insert(json["AccessKeyId"].to_string());
        keys.len() >= 3
    })
    .await;
    assert!(
        rotated,
        "credentials rotated twice within 40 s; saw {} sets",
        keys.len()
    );
    assert!(
        proxy.count("AssumeRole") <= 6,
        "refreshed ahead, not per request: {} calls",
        proxy.count("AssumeRole")
    );
}

#[tokio::test]
async fn outage_serves_cached_credentials_until_they_expire_then_recovers() {
    let proxy = StsProxy::start().await;
    proxy.set_expiration(Some(Duration::from_secs(20)));
    let daemon =
        Daemon::start_with(Options::new(&proxy.url(), DEV).server("refresh_before = \"10s\""))
            .await;
    let warm = daemon.get("/role/dev").await;
    assert_eq!(warm.status, 200);
    let first_key = warm.json()["AccessKeyId"].clone();

    proxy.set_fault(Some(Fault::ServerError));
    let mut served_during_outage = 0;
    let mut unavailable_message = String::new();
    let went_unavailable = poll_until(&daemon, Duration::from_secs(40), |status, json| {
        if status == 200 {
            assert_eq!(
                json["AccessKeyId"], first_key,
                "nothing new can come from a failing STS"
            );
            served_during_outage += 1;
            false
        } else {
            assert_eq!(status, 503, "{json}");
            unavailable_message = json["message"].as_str().unwrap_or_default().to_owned();
            true
        }
    })
    .await;
    assert!(went_unavailable, "expiring credentials stop being served");
    assert!(
        served_during_outage > 0,
        "cached credentials were served during the outage"
    );
    assert!(
        unavailable_message.contains("InternalFailure"),
        "503 says why: {unavailable_message}"
    );
    let failed_calls = proxy.count("AssumeRole");
    assert!(
        failed_calls >= 2,
        "the daemon kept trying ({failed_calls} calls)"
    );

    proxy.set_fault(None);
    let recovered = poll_until(&daemon, Duration::from_secs(60), |status, json| {
        status == 200 && json["AccessKeyId"] != first_key
    })
    .await;
    assert!(recovered, "served fresh credentials once STS was back");
}

#[tokio::test]
async fn access_denied_is_remembered_so_retry_loops_do_not_reach_sts() {
    let proxy = StsProxy::start().await;
    proxy.set_fault(Some(Fault::AccessDenied));
    let daemon = Daemon::start(&proxy.url(), DEV).await;
    for _ in 0..20 {
        let answer = daemon.get("/role/dev").await;
        assert_eq!(answer.status, 503);
        assert_eq!(answer.content_type, "application/json");
        let json = answer.json();
        assert_eq!(json["code"], "AccessDenied");
        assert!(
            json["message"].as_str().is_some_and(|m| m.contains("dev")),
            "{json}"
        );
    }
    assert_eq!(proxy.count("AssumeRole"), 1);
}

#[tokio::test]
async fn throttling_is_retried_and_reported() {
    let proxy = StsProxy::start().await;
    proxy.set_fault(Some(Fault::Throttling));
    let daemon = Daemon::start(&proxy.url(), DEV).await;
    let answer = daemon.get("/role/dev").await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.json()["code"], "Throttling");
    assert!(proxy.count("AssumeRole") >= 2, "the SDK's retries ran");
    proxy.set_fault(None);
    let recovered = poll_until(&daemon, Duration::from_secs(30), |status, _| status == 200).await;
    assert!(recovered, "served once STS stopped throttling");
}

#[tokio::test]
async fn role_chaining_signs_with_the_upstream_session_and_passes_parameters() {
    let proxy = StsProxy::start().await;
    let roles = r#"
[roles.hub]
role_arn = "arn:aws:iam::111111111111:role/hub"

[roles.prod]
role_arn = "arn:aws:iam::222222222222:role/prod"
via = "hub"
duration = "2h"
external_id = "ext-1234"
session_name = "bob"
policy = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}'
policy_arns = ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
tags = { team = "core" }
transitive_tag_keys = ["team"]
source_identity = "bob-id"
"#;
    let daemon = Daemon::start(&proxy.url(), roles).await;
    let answer = daemon.get("/role/prod").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["AccountId"], "222222222222");
    let calls = proxy.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        calls[0].params["RoleArn"],
        "arn:aws:iam::111111111111:role/hub"
    );
    let hub_key = serde_json::from_str::<serde_json::Value>(&daemon.get("/role/hub").await.body)
        .expect("json")["AccessKeyId"]
        .as_str()
        .map(str::to_owned);
    assert_eq!(
        calls[1].access_key_id, hub_key,
        "prod is signed by hub's session"
    );
    let prod = &calls[1].params;
    assert_eq!(prod["RoleArn"], "arn:aws:iam::222222222222:role/prod");
    assert_eq!(
        prod["DurationSeconds"], "3600",
        "chained sessions are clamped to 1h"
    );
    assert_eq!(prod["ExternalId"], "ext-1234");
    assert_eq!(prod["RoleSessionName"], "bob");
    assert!(prod["Policy"].contains("s3:*"));
    assert_eq!(
        prod["PolicyArns.member.1.arn"],
        "arn:aws:iam::aws:policy/ReadOnlyAccess"
    );
    assert_eq!(prod["Tags.member.1.Key"], "team");
    assert_eq!(prod["Tags.member.1.Value"], "core");
    assert_eq!(prod["TransitiveTagKeys.member.1"], "team");
    assert_eq!(prod["SourceIdentity"], "bob-id");
    assert!(
        daemon.log().contains("asking for 1h"),
        "the clamp is logged"
    );
}

#[tokio::test]
async fn prefetch_assumes_at_start() {
    let proxy = StsProxy::start().await;
    let roles = format!("{DEV}prefetch = true\n");
    let _daemon = Daemon::start(&proxy.url(), &roles).await;
    assert!(
        proxy
            .wait_for("AssumeRole", 1, Duration::from_secs(20))
            .await,
        "assumed without a request"
    );
}
