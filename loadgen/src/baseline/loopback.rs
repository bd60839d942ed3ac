//! Loopback TCP baselines for the broker cases: what two glommio executors get from each other
//! over 127.0.0.1 on this machine, in this run, with no broker in between.
//!
//! - bandwidth: one executor writes 1 MiB buffers for a fixed time, the other reads them into a
//!   1 MiB buffer (each byte is copied twice by the kernel: into the socket on `send`, out of it
//!   on `recv`);
//! - ping-pong: 128-byte request, 128-byte response, one at a time, timed round trip by round
//!   trip. FACTS.md: across cores on this VM a round trip costs 126–224 µs (waking a parked vCPU
//!   goes through the hypervisor), on one core 32–36 µs — so every broker latency figure is read
//!   beside this one.
//!
//! Each pair is two executors pinned to the given CPUs; the server binds port 0 and tells the
//! main thread its address before the client executor starts.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;

use super::disk::{fill_pseudo_random, gio, latency_histogram, thread_cpu_time};
use super::BaselineResult;

/// One write (sender) or read buffer (receiver) in the bandwidth baseline.
pub const BANDWIDTH_BUFFER_BYTES: usize = 1 << 20;
/// Request and response size of the ping-pong baseline.
pub const PING_BYTES: usize = 128;
/// Unrecorded round trips before the clock starts.
const PING_WARMUP_COUNT: u32 = 200;

/// What the bandwidth baseline measured on each side.
#[derive(Debug, Clone, Copy)]
pub struct Bandwidth {
    pub bytes_total: u64,
    /// Receiver's first byte to its end of stream.
    pub elapsed: Duration,
    pub sender_cpu: Duration,
    pub receiver_cpu: Duration,
    pub sender_cpu_index: usize,
    pub receiver_cpu_index: usize,
}

impl Bandwidth {
    pub fn mb_per_s(&self) -> f64 {
        self.bytes_total as f64 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }
}

/// Round trips of the ping-pong baseline, in microseconds.
pub struct PingPong {
    pub histogram: Histogram<u64>,
    pub elapsed: Duration,
    pub client_cpu_index: usize,
    pub server_cpu_index: usize,
}

impl PingPong {
    pub fn round_trips_per_s(&self) -> f64 {
        self.histogram.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Bandwidth from an executor on `sender_cpu` to one on `receiver_cpu`, for `duration`.
pub fn bandwidth(sender_cpu: usize, receiver_cpu: usize, duration: Duration) -> BaselineResult<Bandwidth> {
    let (received, sent) = pair(
        "bench-lo-recv",
        receiver_cpu,
        |stream| async move { receive_all(stream).await },
        "bench-lo-send",
        sender_cpu,
        move |stream| async move { send_for(stream, duration).await },
    )?;
    let (bytes_received, elapsed, receiver_cpu_time) = received;
    let (bytes_sent, sender_cpu_time) = sent;
    if bytes_received != bytes_sent {
        return Err(format!("loopback: sent {bytes_sent} bytes, received {bytes_received}").into());
    }
    Ok(Bandwidth {
        bytes_total: bytes_received,
        elapsed,
        sender_cpu: sender_cpu_time,
        receiver_cpu: receiver_cpu_time,
        sender_cpu_index: sender_cpu,
        receiver_cpu_index: receiver_cpu,
    })
}

/// 128-byte round trips from an executor on `client_cpu` to one on `server_cpu`, for `duration`.
pub fn ping_pong(client_cpu: usize, server_cpu: usize, duration: Duration) -> BaselineResult<PingPong> {
    let ((), (histogram, elapsed)) = pair(
        "bench-pong",
        server_cpu,
        |stream| async move { echo(stream).await },
        "bench-ping",
        client_cpu,
        move |stream| async move { ping(stream, duration).await },
    )?;
    Ok(PingPong { histogram, elapsed, client_cpu_index: client_cpu, server_cpu_index: server_cpu })
}

/// Runs `server` on a new executor pinned to `server_cpu` with the first connection accepted on
/// 127.0.0.1, and `client` on one pinned to `client_cpu` with a stream connected to it.
fn pair<S, SF, TS, C, CF, TC>(
    server_name: &str,
    server_cpu: usize,
    server: S,
    client_name: &str,
    client_cpu: usize,
    client: C,
) -> BaselineResult<(TS, TC)>
where
    S: FnOnce(TcpStream) -> SF + Send + 'static,
    SF: Future<Output = BaselineResult<TS>> + 'static,
    TS: Send + 'static,
    C: FnOnce(TcpStream) -> CF + Send + 'static,
    CF: Future<Output = BaselineResult<TC>> + 'static,
    TC: Send + 'static,
{
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
    let server_handle = LocalExecutorBuilder::new(Placement::Fixed(clamp_cpu(server_cpu)))
        .name(server_name)
        .spawn(move || async move {
            let listener = TcpListener::bind("127.0.0.1:0").map_err(gio)?;
            addr_tx.send(listener.local_addr().map_err(gio)?)?;
            let stream = listener.accept().await.map_err(gio)?;
            stream.set_nodelay(true).map_err(gio)?;
            server(stream).await
        })
        .map_err(gio)?;
    let Ok(addr) = addr_rx.recv() else {
        // The server stopped before listening: its error says why.
        server_handle.join().map_err(gio)??;
        return Err("loopback server stopped before listening".into());
    };
    let client_handle = LocalExecutorBuilder::new(Placement::Fixed(clamp_cpu(client_cpu)))
        .name(client_name)
        .spawn(move || async move {
            let stream = TcpStream::connect(addr).await.map_err(gio)?;
            stream.set_nodelay(true).map_err(gio)?;
            client(stream).await
        })
        .map_err(gio)?;
    // The client ends first (it closes the stream), then the server sees end of stream.
    let client_result = client_handle.join().map_err(gio)?;
    let server_result = server_handle.join().map_err(gio)?;
    Ok((server_result?, client_result?))
}

pub fn clamp_cpu(cpu: usize) -> usize {
    cpu.min(super::env::cpu_count().saturating_sub(1))
}

/// Writes 1 MiB buffers until `duration` has passed, then closes. Returns (bytes, CPU time).
async fn send_for(mut stream: TcpStream, duration: Duration) -> BaselineResult<(u64, Duration)> {
    let mut buf = vec![0u8; BANDWIDTH_BUFFER_BYTES];
    fill_pseudo_random(&mut buf, 11);
    let cpu_start = thread_cpu_time();
    let deadline = Instant::now() + duration;
    let mut bytes_sent = 0u64;
    while Instant::now() < deadline {
        stream.write_all(&buf).await?;
        bytes_sent += buf.len() as u64;
    }
    stream.close().await?;
    Ok((bytes_sent, thread_cpu_time().saturating_sub(cpu_start)))
}

/// Reads until end of stream. Returns (bytes, first byte to end of stream, CPU time).
async fn receive_all(mut stream: TcpStream) -> BaselineResult<(u64, Duration, Duration)> {
    let mut buf = vec![0u8; BANDWIDTH_BUFFER_BYTES];
    let mut bytes_received = 0u64;
    let mut first_byte: Option<(Instant, Duration)> = None;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        first_byte.get_or_insert_with(|| (Instant::now(), thread_cpu_time()));
        bytes_received += n as u64;
    }
    let Some((start, cpu_start)) = first_byte else {
        return Err("loopback receiver got nothing".into());
    };
    Ok((bytes_received, start.elapsed(), thread_cpu_time().saturating_sub(cpu_start)))
}

/// Answers every 128-byte message with 128 bytes until end of stream.
async fn echo(mut stream: TcpStream) -> BaselineResult<()> {
    let mut buf = [0u8; PING_BYTES];
    loop {
        match stream.read_exact(&mut buf).await {
            Ok(()) => stream.write_all(&buf).await?,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Timed 128-byte round trips for `duration`, after an unrecorded warm-up.
async fn ping(mut stream: TcpStream, duration: Duration) -> BaselineResult<(Histogram<u64>, Duration)> {
    let mut buf = [0u8; PING_BYTES];
    fill_pseudo_random(&mut buf, 13);
    for _ in 0..PING_WARMUP_COUNT {
        stream.write_all(&buf).await?;
        stream.read_exact(&mut buf).await?;
    }
    let mut histogram = latency_histogram()?;
    let start = Instant::now();
    let deadline = start + duration;
    while Instant::now() < deadline {
        let sent = Instant::now();
        stream.write_all(&buf).await?;
        stream.read_exact(&mut buf).await?;
        histogram.saturating_record(sent.elapsed().as_micros() as u64);
    }
    let elapsed = start.elapsed();
    stream.close().await?;
    Ok((histogram, elapsed))
}
