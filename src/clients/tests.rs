use std::time::{Duration, Instant};

use super::*;

fn remote(address: &str) -> Arc<Client> {
    Client::new(
        format!("{address}:40000").parse().expect("addr"),
        PeerOwner::Remote,
    )
}

#[test]
fn uses_by_one_client_count_on_one_entry_per_role() {
    let clients = Clients::new();
    let app = remote("169.254.170.3");
    for _ in 0..3 {
        clients.took(&app, "dev");
    }
    clients.took(&app, "prod");
    // Another connection from the same address and user is the same client.
    clients.took(&remote("169.254.170.3"), "dev");
    let dev = clients.recent("dev", "");
    assert_eq!(dev.len(), 1);
    assert_eq!(dev[0].requests, 4);
    assert_eq!(dev[0].process, UNKNOWN_PROCESS);
    assert_eq!(dev[0].address, "169.254.170.3");
    assert_eq!(dev[0].pid, None);
    assert_eq!(clients.recent("prod", "")[0].requests, 1);
    assert!(clients.recent("other", "").is_empty());
}

#[test]
fn a_role_keeps_only_its_most_recent_clients() {
    let clients = Clients::new();
    for n in 0..200u32 {
        let address = std::net::Ipv4Addr::from(0x0a00_0000 + n).to_string();
        clients.took(&remote(&address), "dev");
        std::thread::sleep(Duration::from_micros(50));
    }
    let dev = clients.recent("dev", "");
    assert_eq!(dev.len(), RECENT_PER_ROLE);
    let newest: Vec<String> = (200 - RECENT_PER_ROLE as u32..200)
        .rev()
        .map(|n| std::net::Ipv4Addr::from(0x0a00_0000 + n).to_string())
        .collect();
    let kept: Vec<String> = dev.iter().map(|c| c.address.clone()).collect();
    assert_eq!(kept, newest, "most recent first, the oldest dropped");
}

#[test]
fn a_local_client_is_named_off_the_request_path_with_its_uses_kept() {
    let clients = Clients::new();
    // A socket nobody holds: the resolver finds no process, and says so.
    let socket = SocketOwner {
        uid: 4321,
        inode: u64::MAX,
    };
    let client = Client::new(
        "127.0.0.1:40000".parse().expect("addr"),
        PeerOwner::Local(socket),
    );
    clients.took(&client, "dev");
    clients.took(&client, "dev");
    let deadline = Instant::now() + Duration::from_secs(10);
    let named = loop {
        let dev = clients.recent("dev", "");
        if let Some(entry) = dev.first() {
            break entry.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the resolver never named the client"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(named.requests, 2, "uses while pending are counted");
    assert_eq!(named.uid, Some(4321));
    assert_eq!(named.process, UNKNOWN_PROCESS);
    assert_eq!(named.address, "127.0.0.1");
    clients.took(&client, "dev");
    assert_eq!(clients.recent("dev", "")[0].requests, 3);
}

#[test]
fn the_daemon_token_never_shows_in_a_command_line() {
    let clients = Clients::new();
    let identity = Arc::new(Identity {
        address: "127.0.0.1".parse().expect("addr"),
        uid: Some(1000),
        process: Some(Process {
            pid: 4242,
            started: 1,
            exe: "/usr/bin/curl".into(),
            cmdline: "curl -H Authorization: s3cr3t-token http://127.0.0.1:9911/creds".into(),
        }),
    });
    let now = SystemTime::now();
    clients.shared.count("dev", &identity, 1, now, now);
    let dev = clients.recent("dev", "s3cr3t-token");
    assert_eq!(
        dev[0].cmdline.as_deref(),
        Some("curl -H Authorization: <redacted> http://127.0.0.1:9911/creds")
    );
    assert_eq!(dev[0].pid, Some(4242));
    assert_eq!(dev[0].process, "/usr/bin/curl");
}

#[tokio::test]
async fn the_first_answer_waits_until_its_client_is_named_and_counted() {
    let clients = Clients::new();
    // Nobody holds this socket: the walk looks everywhere, then names the
    // client by its address and user.
    let socket = SocketOwner {
        uid: 4321,
        inode: u64::MAX - 1,
    };
    let client = clients.accepted(
        "127.0.0.1:40001".parse().expect("addr"),
        PeerOwner::Local(socket),
    );
    clients.took(&client, "dev");
    // Woken by the resolver, long before the bound.
    tokio::time::timeout(
        Duration::from_secs(20),
        client.named_within(Duration::from_secs(600)),
    )
    .await
    .expect("the resolver wakes the waiting answer");
    assert!(!client.naming());
    // Counted before the answer was released: no polling needed.
    let dev = clients.recent("dev", "");
    assert_eq!(dev.len(), 1, "{dev:?}");
    assert_eq!(dev[0].requests, 1);
    assert_eq!(dev[0].uid, Some(4321));
    // A remote client has nothing to wait for.
    assert!(!remote("169.254.170.3").naming());
}
