//! The soak: the real binary with 100 roles against moto behind the proxy,
//! 90-second sessions (so every role refreshes many times), clients polling
//! throughout, and on the way 20 s of STS 500s and 20 s of cut connections.
//! It must end with zero client errors, zero expired credentials served, and
//! a flat RSS.
//!
//! CI runs it for 3 minutes; `scripts/soak` runs it for 30 (set
//! `ASSUMED_SOAK_SECONDS`). docs/reliability.md has the latest long result.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::harness::{Daemon, Fault, Options, Stall, StsProxy, parse_utc_timestamp};

const ROLES: usize = 100;
const CLIENTS: usize = 16;
const SESSION: Duration = Duration::from_secs(90);
const OUTAGE: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Tally {
    served: AtomicU64,
    errors: AtomicU64,
    expired: AtomicU64,
    /// What the first few failed requests got, for the failure message.
    failures: parking_lot::Mutex<Vec<String>>,
}

fn soak_seconds() -> u64 {
    std::env::var("ASSUMED_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn poll(daemon_url: String, token: String, tally: Arc<Tally>, until: Instant, seed: u64) {
    let client = reqwest::Client::new();
    let mut rng = seed;
    while Instant::now() < until {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let role = (rng >> 33) as usize % ROLES;
        let answer = client
            .get(format!("{daemon_url}/role/r{role}"))
            .header("authorization", &token)
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        let mut failure = None;
        let ok = match answer {
            Ok(answer) if answer.status() == 200 => {
                let text = answer.text().await.unwrap_or_default();
                let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                let expiration = body["Expiration"].as_str().and_then(parse_utc_timestamp);
                if expiration.is_none_or(|at| at <= SystemTime::now()) {
                    tally.expired.fetch_add(1, Ordering::Relaxed);
                }
                expiration.is_some()
            }
            Ok(answer) => {
                let status = answer.status();
                let body = answer.text().await.unwrap_or_default();
                failure = Some(format!("{status} {body}"));
                false
            }
            Err(error) => {
                failure = Some(format!("no answer: {error}"));
                false
            }
        };
        if ok {
            tally.served.fetch_add(1, Ordering::Relaxed);
        } else {
            tally.errors.fetch_add(1, Ordering::Relaxed);
            let mut failures = tally.failures.lock();
            if failures.len() < 5 {
                failures.push(format!(
                    "r{role} at {}: {}",
                    humantime::format_rfc3339_millis(SystemTime::now()),
                    failure.unwrap_or_else(|| "200 without an Expiration".into())
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_100_roles_through_sts_errors_and_cut_connections() {
    let total = Duration::from_secs(soak_seconds().max(100));
    let proxy = StsProxy::start().await;
    proxy.set_expiration(Some(SESSION));
    let roles: String = (0..ROLES)
        .map(|i| {
            format!("[roles.r{i}]\nrole_arn = \"arn:aws:iam::111111111111:role/r{i}\"\nprefetch = true\n")
        })
        .collect();
    let mut options = Options::new(&proxy.url(), &roles)
        .source("connect_timeout = \"1s\"\nread_timeout = \"2s\"\nsts_timeout = \"4s\"\n");
    options.rust_log = "warn".into();
    let daemon = Daemon::start_with(options).await;
    // Warm: every role prefetched.
    let warm_by = Instant::now() + Duration::from_secs(30);
    while proxy.count("AssumeRole") < ROLES && Instant::now() < warm_by {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(proxy.count("AssumeRole") >= ROLES, "all roles prefetched");

    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let until = started + total;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            tokio::spawn(poll(
                daemon.url(""),
                daemon.token(),
                tally.clone(),
                until,
                i as u64 + 1,
            ))
        })
        .collect();

    // Settle for a session, then sample RSS as the baseline.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let rss_start = rss_kib(daemon.pid());
    let mut rss_peak = rss_start;
    // The outages: 500s at a third of the way, cut connections at two thirds.
    let faults = [(total / 3, "STS 500s"), (total * 2 / 3, "cut connections")];
    for (at, what) in faults {
        tokio::time::sleep((started + at).saturating_duration_since(Instant::now())).await;
        eprintln!("soak: {what} for {OUTAGE:?} at {:?}", started.elapsed());
        match what {
            "STS 500s" => proxy.set_fault(Some(Fault::ServerError)),
            _ => proxy.set_stall(Some(Stall::Drop)),
        }
        tokio::time::sleep(OUTAGE).await;
        proxy.set_fault(None);
        proxy.set_stall(None);
        rss_peak = rss_peak.max(rss_kib(daemon.pid()));
    }
    for client in clients {
        client.await.expect("client");
    }
    let rss_end = rss_kib(daemon.pid());
    rss_peak = rss_peak.max(rss_end);
    let slots = daemon.metric("assumed_cache_slots", &[]).await;
    let drivers = daemon.metric("assumed_cache_drivers", &[]).await;

    let served = tally.served.load(Ordering::Relaxed);
    let errors = tally.errors.load(Ordering::Relaxed);
    let expired = tally.expired.load(Ordering::Relaxed);
    let summary = format!(
        "soak {}s: {served} served, {errors} client errors, {expired} expired; \
         {} STS calls; RSS {} → {} KiB (peak {}); slots {slots}, drivers {drivers}",
        total.as_secs(),
        proxy.calls().len(),
        rss_start,
        rss_end,
        rss_peak,
    );
    eprintln!("{summary}");
    assert!(served > 0, "{summary}");
    assert_eq!(
        errors,
        0,
        "zero client errors: {summary}\n{:#?}\n{}",
        tally.failures.lock(),
        daemon.log()
    );
    assert_eq!(expired, 0, "zero expired credentials: {summary}");
    assert_eq!((slots, drivers), (ROLES as f64, ROLES as f64), "{summary}");
    // Flat: a little allocator noise, not growth with time.
    assert!(
        rss_end <= rss_start + 4 * 1024,
        "RSS grew from {rss_start} to {rss_end} KiB: {summary}"
    );
}
