//! scripts/bench's cold-path client: connects N clients to the daemon first,
//! then sends all their requests at once and times each answer from its own
//! send. Python is too slow to time a thousand answers to the millisecond.
//!
//! cold_burst PORT PATH TOKEN COUNT  →
//!   {"statuses":[…], "first_ms": the first-sent request's, "latencies_ms":[…] sorted}

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
    let mut answers = Vec::with_capacity(count);
    for mut stream in streams {
        let request = request.clone();
        let sent = Instant::now();
        stream.write_all(request.as_bytes()).await?;
        answers.push(tokio::spawn(async move {
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await?;
            let elapsed = sent.elapsed().as_secs_f64() * 1000.0;
            let status = String::from_utf8_lossy(&answer)
                .split(' ')
                .nth(1)
                .and_then(|code| code.parse::<u16>().ok())
                .unwrap_or(0);
            Ok::<_, std::io::Error>((status, elapsed))
        }));
    }
    let mut statuses = std::collections::BTreeSet::new();
    let mut latencies = Vec::with_capacity(count);
    for answer in answers {
        let (status, elapsed) = answer.await??;
        statuses.insert(status);
        latencies.push(elapsed);
    }
    let first = latencies.first().copied().unwrap_or_default();
    latencies.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({ "statuses": statuses, "first_ms": first, "latencies_ms": latencies })
    );
    Ok(())
}
