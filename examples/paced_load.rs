//! scripts/bench's open-loop client: keeps CONNECTIONS keep-alive
//! connections and sends RATE requests a second between them for SECONDS,
//! each connection on its own fixed schedule, whatever the answers take.
//! wrk waits for each answer before sending again, so a server's latency
//! under wrk depends on how fast it is: the faster one gets more requests
//! and a busier load generator beside it on the same cores. A fixed rate
//! puts every server under the same load, so their tails compare.
//!
//! paced_load PORT PATH TOKEN CONNECTIONS RATE SECONDS  →
//!   {"sent", "rate" (achieved), "errors" (non-200 or broken connections),
//!    "p50_us", "p99_us", "p999_us"}
//!
//! Latency runs from the send to the whole answer. A connection that falls
//! behind its schedule sends at once (and stays behind), so a slow server
//! shows up as a lower achieved rate as well as in the tail.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, port, path, token, connections, rate, seconds] = args.as_slice() else {
        return Err("usage: paced_load PORT PATH TOKEN CONNECTIONS RATE SECONDS".into());
    };
    let port: u16 = port.parse()?;
    let connections: u32 = connections.parse()?;
    let rate: f64 = rate.parse()?;
    let seconds: f64 = seconds.parse()?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {token}\r\n\r\n");
    let interval = Duration::from_secs_f64(f64::from(connections) / rate);
    let start = Instant::now() + Duration::from_millis(100);
    let end = start + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for i in 0..connections {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        // Spread the connections' schedules over one interval.
        let first = start + interval.mul_f64(f64::from(i) / f64::from(connections));
        tasks.push(tokio::spawn(connection(
            stream,
            request.clone(),
            first,
            interval,
            end,
        )));
    }
    let mut latencies = Vec::new();
    let mut errors = 0u64;
    for task in tasks {
        let (mut own, own_errors) = task.await?;
        latencies.append(&mut own);
        errors += own_errors;
    }
    latencies.sort_unstable();
    let at = |fraction: f64| {
        let index =
            ((latencies.len() as f64 * fraction) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(index).map_or(0, |d: &Duration| d.as_micros())
    };
    println!(
        "{}",
        serde_json::json!({
            "sent": latencies.len() as u64 + errors,
            "rate": latencies.len() as f64 / seconds,
            "errors": errors,
            "p50_us": at(0.50),
            "p99_us": at(0.99),
            "p999_us": at(0.999),
        })
    );
    Ok(())
}

/// One connection's requests on its schedule: the 200s' latencies, and how
/// many requests failed.
async fn connection(
    mut stream: TcpStream,
    request: String,
    first: Instant,
    interval: Duration,
    end: Instant,
) -> (Vec<Duration>, u64) {
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut buffer = Vec::with_capacity(4096);
    let mut due = first;
    while due < end {
        tokio::time::sleep_until(due.into()).await;
        let sent = Instant::now();
        let answered = match stream.write_all(request.as_bytes()).await {
            Ok(()) => read_answer(&mut stream, &mut buffer).await,
            Err(error) => Err(error),
        };
        match answered {
            Ok(200) => latencies.push(sent.elapsed()),
            Ok(_) => errors += 1,
            Err(_) => {
                // The connection is gone: count what it would have sent.
                let left =
                    end.saturating_duration_since(due).as_secs_f64() / interval.as_secs_f64();
                return (latencies, errors + 1 + left as u64);
            }
        }
        due += interval;
    }
    (latencies, errors)
}

/// Reads one whole answer (head and `Content-Length` body); its status.
async fn read_answer(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> std::io::Result<u16> {
    buffer.clear();
    loop {
        if let Some(head_end) = find(buffer, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..head_end]);
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|code| code.parse().ok())
                .unwrap_or(0);
            let length = head
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buffer.len() >= head_end + 4 + length {
                return Ok(status);
            }
        }
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
