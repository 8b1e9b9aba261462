//! `/metrics`: valid Prometheus text, counters that move, no secrets.

use std::collections::HashMap;

use crate::harness::{Daemon, Options, StsProxy};

const DEV: &str = r#"
[roles.dev]
role_arn = "arn:aws:iam::111111111111:role/dev"
"#;

/// Parses the exposition with a real parser and sums samples by metric name
/// and a filter on labels.
async fn scrape(daemon: &Daemon) -> (String, prometheus_parse::Scrape) {
    let answer = daemon.get("/metrics").await;
    assert_eq!(answer.status, 200);
    assert!(
        answer.content_type.starts_with("text/plain"),
        "{}",
        answer.content_type
    );
    let lines = answer.body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    (answer.body, scrape)
}

fn sum(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test]
async fn metrics_parse_move_with_traffic_and_carry_no_secrets() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start(&proxy.url(), DEV).await;
    let (_, before) = scrape(&daemon).await;
    assert_eq!(sum(&before, "assumed_sts_calls_total", &[]), 0.0);
    assert_eq!(sum(&before, "assumed_build_info", &[]), 1.0);

    let creds = daemon.get("/role/dev").await.json();
    for _ in 0..4 {
        assert_eq!(daemon.get("/role/dev").await.status, 200);
    }
    assert_eq!(daemon.get_with("/role/dev", &[]).await.status, 401);

    let (text, after) = scrape(&daemon).await;
    let route = [("route", "/role/:name")];
    assert_eq!(
        sum(
            &after,
            "assumed_http_requests_total",
            &[route[0], ("status", "200")]
        ),
        5.0
    );
    assert_eq!(
        sum(
            &after,
            "assumed_http_requests_total",
            &[route[0], ("status", "401")]
        ),
        1.0
    );
    let sts = [
        ("role", "dev"),
        ("operation", "AssumeRole"),
        ("outcome", "success"),
    ];
    assert_eq!(sum(&after, "assumed_sts_calls_total", &sts), 1.0);
    assert_eq!(
        sum(&after, "assumed_refreshes_total", &[("role", "dev")]),
        1.0
    );
    assert_eq!(
        sum(&after, "assumed_cache_lookups_total", &[("result", "wait")]),
        1.0
    );
    assert_eq!(
        sum(&after, "assumed_cache_lookups_total", &[("result", "hit")]),
        4.0
    );
    let expiry = sum(
        &after,
        "assumed_credentials_expiry_seconds",
        &[("role", "dev")],
    );
    assert!(expiry > 3000.0, "seconds to expiry: {expiry}");
    let latency_count: f64 = after
        .samples
        .iter()
        .filter(|s| s.metric == "assumed_http_request_duration_seconds")
        .filter_map(|s| match &s.value {
            prometheus_parse::Value::Histogram(buckets) => buckets.last().map(|b| b.count),
            _ => None,
        })
        .sum();
    assert!(
        latency_count >= 6.0,
        "the latency histogram counted the requests: {latency_count}"
    );

    let secrets: HashMap<&str, &str> = [
        (
            "secret key",
            creds["SecretAccessKey"].as_str().unwrap_or("?"),
        ),
        ("session token", creds["Token"].as_str().unwrap_or("?")),
    ]
    .into_iter()
    .collect();
    let token = daemon.token();
    for (what, secret) in secrets {
        assert!(!text.contains(secret), "the {what} is in /metrics");
    }
    assert!(!text.contains(&token), "the auth token is in /metrics");
}

#[tokio::test]
async fn metrics_can_be_turned_off() {
    let proxy = StsProxy::start().await;
    let daemon =
        Daemon::start_with(Options::new(&proxy.url(), DEV).server("metrics = false")).await;
    assert_eq!(daemon.get_with("/metrics", &[]).await.status, 404);
}

#[tokio::test]
async fn metrics_reveal_nothing_without_the_token() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start(&proxy.url(), DEV).await;
    assert_eq!(daemon.get("/role/dev").await.status, 200);
    for headers in [
        vec![],
        vec![("authorization", "wrong-token-wrong-token")],
        vec![("authorization", "Bearer wrong-token-wrong-token")],
    ] {
        let answer = daemon.get_with("/metrics", &headers).await;
        assert!(
            [401, 403].contains(&answer.status),
            "{headers:?}: {}",
            answer.status
        );
        assert!(!answer.body.contains("dev"), "{}", answer.body);
    }
    // Prometheus sends the token file as a bearer token.
    let bearer = format!("Bearer {}", daemon.token());
    let answer = daemon
        .get_with("/metrics", &[("authorization", &bearer)])
        .await;
    assert_eq!(answer.status, 200);
    assert!(answer.body.contains("role=\"dev\""));
}
