//! scripts/bench's cold-path client: connects N clients to the daemon first,
//! then sends all their requests at once and times each answer from its own
//! send. Python is too slow to time a thousand answers to the millisecond.
//!
//! cold_burst PORT PATH TOKEN COUNT  →
//!   {"statuses":[…], "first_ms": the first-sent request's,
//!    "first_answer_at": when the earliest answer arrived, in seconds on
//!    CLOCK_MONOTONIC (shared with the bench's STS proxy), "latencies_ms":[…] sorted}

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, port, path, token, count] = args.as_slice() else {
        return Err("usage: cold_burst PORT PATH TOKEN COUNT".into());
    };
    let port: u16 = port.parse()?;
    let count: usize = count.parse()?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {token}\r\nConnection: close\r\n\r\n"
    );
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        streams.push(TcpStream::connect(("127.0.0.1", port)).await?);
    }
    let epoch = (Instant::now(), monotonic_seconds());
    let mut answers = Vec::with_capacity(count);
    for mut stream in streams {
        let request = request.clone();
        let sent = Instant::now();
        stream.write_all(request.as_bytes()).await?;
        answers.push(tokio::spawn(async move {
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await?;
            let arrived = Instant::now();
            let elapsed = (arrived - sent).as_secs_f64() * 1000.0;
            let status = String::from_utf8_lossy(&answer)
                .split(' ')
                .nth(1)
                .and_then(|code| code.parse::<u16>().ok())
                .unwrap_or(0);
            Ok::<_, std::io::Error>((status, elapsed, arrived))
        }));
    }
    let mut statuses = std::collections::BTreeSet::new();
    let mut latencies = Vec::with_capacity(count);
    let mut earliest: Option<Instant> = None;
    for answer in answers {
        let (status, elapsed, arrived) = answer.await??;
        statuses.insert(status);
        latencies.push(elapsed);
        earliest = Some(earliest.map_or(arrived, |e| e.min(arrived)));
    }
    let first_answer_at = earliest.map_or(0.0, |at| epoch.1 + (at - epoch.0).as_secs_f64());
    let first = latencies.first().copied().unwrap_or_default();
    latencies.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "statuses": statuses,
            "first_ms": first,
            "first_answer_at": first_answer_at,
            "latencies_ms": latencies,
        })
    );
    Ok(())
}

/// Now on CLOCK_MONOTONIC, which Python's `time.monotonic()` also reads.
fn monotonic_seconds() -> f64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the one we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as f64 + now.tv_nsec as f64 / 1e9
}
