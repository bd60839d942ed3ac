//! Shared helpers for the tests that run the real `shardlog` binary: a server process (started
//! on free ports, killed by a drop guard), bounded CLI runs, a metrics scrape, and a glommio
//! executor for in-process clients. Every wait here is bounded and fails with what the server
//! printed.
#![allow(dead_code)] // Each test file uses a different subset.
#![allow(clippy::unwrap_used)]

pub mod raw;

use std::collections::HashMap;
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The longest any single wait in these tests may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_shardlog")
}

/// A fresh directory under the system temp dir (a real file system here, not tmpfs).
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir_in(std::env::temp_dir()).unwrap()
}

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub shards: usize,
    pub metrics: bool,
    /// Also listen for Kafka clients (`--kafka-listen`, one Kafka port per shard).
    pub kafka: bool,
    /// Extra environment variables for the server process.
    pub env: Vec<(String, String)>,
    /// Extra `serve` flags.
    pub extra_args: Vec<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions { shards: 2, metrics: false, kafka: false, env: Vec::new(), extra_args: Vec::new() }
    }
}

/// A running `shardlog serve`. Dropping it SIGKILLs the process if it still runs.
pub struct Server {
    child: Option<Child>,
    /// The address every shard accepts on (`--broker`).
    pub addr: String,
    /// Each shard's own listener.
    pub shard_addrs: Vec<String>,
    /// `host:port` of the metrics endpoint, with `metrics: true`.
    pub metrics_addr: Option<String>,
    /// The Kafka bootstrap address (every shard accepts on it), with `kafka: true`.
    pub kafka_addr: Option<String>,
    /// Each shard's own Kafka listener (the broker Metadata names for its partitions).
    pub kafka_shard_addrs: Vec<String>,
    pub data_dir: PathBuf,
    stderr_path: PathBuf,
    _logs: tempfile::TempDir,
    options: ServerOptions,
    /// Held until the process is gone.
    ports: PortBlock,
}

impl Server {
    /// Starts a 2-shard server on `data_dir` and waits until it prints its addresses.
    pub fn start(data_dir: &Path) -> Server {
        Server::start_with(data_dir, ServerOptions::default())
    }

    pub fn start_with(data_dir: &Path, options: ServerOptions) -> Server {
        // Something outside these tests may take a port between our check and the server's
        // bind; then the server fails to start and we try other ports.
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Server::try_start(data_dir, &options) {
                Ok(server) => return server,
                Err((message, retry)) => {
                    if !retry {
                        panic!("{message}");
                    }
                    failures.push(message);
                }
            }
        }
        panic!("the server did not start:\n{}", failures.join("\n---\n"));
    }

    fn try_start(data_dir: &Path, options: &ServerOptions) -> Result<Server, (String, bool)> {
        // Ports: listen, one per shard, metrics, then the Kafka bootstrap and one per shard.
        let kafka_ports = if options.kafka { options.shards as u16 + 1 } else { 0 };
        let ports = PortBlock::reserve(options.shards as u16 + 2 + kafka_ports);
        Server::spawn(data_dir, options, ports)
    }

    /// SIGKILLs the server and starts it again at once on the same data directory and ports,
    /// as a supervisor would; the new process must come up on the first try.
    pub fn kill_and_restart(self) -> Server {
        self.kill_and_restart_after(|| {})
    }

    /// `kill_and_restart`, running `between` after the kill and before the restart.
    pub fn kill_and_restart_after(mut self, between: impl FnOnce()) -> Server {
        self.kill();
        between();
        let (data_dir, options) = (self.data_dir.clone(), self.options.clone());
        let ports = std::mem::replace(&mut self.ports, PortBlock { base: 0, _lock: None });
        match Server::spawn(&data_dir, &options, ports) {
            Ok(server) => server,
            Err((message, _)) => panic!("the server did not come back after SIGKILL:\n{message}"),
        }
    }

    fn spawn(data_dir: &Path, options: &ServerOptions, ports: PortBlock) -> Result<Server, (String, bool)> {
        let logs = temp_dir("shardlog-itest-logs-");
        let stderr_path = logs.path().join("server.stderr");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let listen = format!("127.0.0.1:{}", ports.base);
        let mut command = Command::new(binary());
        command
            .args(["serve", "--listen", &listen, "--shards", &options.shards.to_string(), "--data-dir"])
            .arg(data_dir)
            .args(["--shard-base-port", &(ports.base + 1).to_string()])
            .args(&options.extra_args)
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        if options.metrics {
            command.args(["--metrics-listen", &format!("127.0.0.1:{}", ports.base + 1 + options.shards as u16)]);
        }
        if options.kafka {
            let kafka_base = ports.base + 2 + options.shards as u16;
            command
                .args(["--kafka-listen", &format!("127.0.0.1:{kafka_base}")])
                .args(["--kafka-shard-base-port", &(kafka_base + 1).to_string()]);
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child: Some(child),
            addr: String::new(),
            shard_addrs: Vec::new(),
            metrics_addr: None,
            kafka_addr: None,
            kafka_shard_addrs: Vec::new(),
            data_dir: data_dir.to_path_buf(),
            stderr_path,
            _logs: logs,
            options: options.clone(),
            ports,
        };
        let expected_lines =
            1 + options.shards + usize::from(options.metrics) + if options.kafka { 1 + options.shards } else { 0 };
        let deadline = Instant::now() + WAIT;
        let mut lines = Vec::new();
        while lines.len() < expected_lines {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let message = format!(
                        "the server did not print its addresses within {WAIT:?} (data dir {}); stdout so far: \
                         {lines:?}\n{}",
                        data_dir.display(),
                        server.diagnostics()
                    );
                    server.kill();
                    return Err((message, false));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = server.wait_exit(WAIT);
                    let stderr = server.stderr();
                    let retry = stderr.contains("binding") || stderr.contains("in use");
                    return Err((
                        format!("the server exited during startup ({status:?}); stdout: {lines:?}\nstderr:\n{stderr}"),
                        retry,
                    ));
                }
            }
        }
        // "shardlog listening on ADDR with N shards", "  shard i: ADDR", "  metrics: http://ADDR/metrics"
        let head = lines[0].strip_prefix("shardlog listening on ").unwrap_or_else(|| panic!("{lines:?}"));
        server.addr = head.split_whitespace().next().unwrap().to_owned();
        assert!(head.ends_with(&format!(
            "with {} shard{}",
            options.shards,
            if options.shards == 1 { "" } else { "s" }
        )));
        for (i, line) in lines[1..=options.shards].iter().enumerate() {
            let address = line.trim().strip_prefix(&format!("shard {i}: ")).unwrap_or_else(|| panic!("{lines:?}"));
            server.shard_addrs.push(address.to_owned());
        }
        if options.metrics {
            let line = lines[options.shards + 1].trim();
            let url = line.strip_prefix("metrics: http://").unwrap_or_else(|| panic!("{lines:?}"));
            server.metrics_addr = Some(url.strip_suffix("/metrics").unwrap().to_owned());
        }
        if options.kafka {
            // "  kafka: ADDR", then "  kafka broker i: ADDR" per shard.
            let first = 1 + options.shards + usize::from(options.metrics);
            let line = lines[first].trim();
            server.kafka_addr = Some(line.strip_prefix("kafka: ").unwrap_or_else(|| panic!("{lines:?}")).to_owned());
            for (i, line) in lines[first + 1..].iter().enumerate() {
                let address =
                    line.trim().strip_prefix(&format!("kafka broker {i}: ")).unwrap_or_else(|| panic!("{lines:?}"));
                server.kafka_shard_addrs.push(address.to_owned());
            }
        }
        Ok(server)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The server's stderr; with `SHARDLOG_ITEST_GDB=1`, also every thread's backtrace (for
    /// hangs).
    pub fn diagnostics(&self) -> String {
        let mut text = format!("server stderr:\n{}", self.stderr());
        if std::env::var_os("SHARDLOG_ITEST_GDB").is_some() {
            if let Some(child) = &self.child {
                let pid = child.id().to_string();
                let gdb = ["-p", &pid, "-batch", "-ex", "thread apply all bt"];
                let out = run_program("gdb", &gdb, b"", WAIT);
                text.push_str(&format!("\nthreads of the server:\n{}", out.stdout));
            }
        }
        text
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap()
    }

    /// Still running (not exited)?
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    pub fn assert_running(&mut self) {
        assert!(self.is_running(), "the server exited; stderr:\n{}", self.stderr());
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child, which has not been reaped yet (so the pid is ours).
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill({}, {signal}) failed", self.pid());
    }

    /// Waits for the process to exit (bounded), reaping it. `None` if it did not exit in time.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) for the server to exit on its own; returns its exit status.
    pub fn wait_exited(&mut self) -> ExitStatus {
        match self.wait_exit(WAIT) {
            Some(status) => status,
            None => {
                let stderr = self.stderr();
                self.kill();
                panic!("the server did not exit within {WAIT:?}; stderr:\n{stderr}");
            }
        }
    }

    /// SIGTERM, then waits (bounded) for the graceful shutdown; returns the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        match self.wait_exit(WAIT) {
            Some(status) => status,
            None => {
                let stderr = self.stderr();
                self.kill();
                panic!("the server did not exit within {WAIT:?} of SIGTERM; stderr:\n{stderr}");
            }
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs `shardlog ARGS --broker ADDR` (bounded), with no stdin.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        self.cli_stdin(args, b"")
    }

    /// Runs `shardlog ARGS --broker ADDR` (bounded), feeding `stdin`.
    pub fn cli_stdin(&self, args: &[&str], stdin: &[u8]) -> CliOutput {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--broker", &self.addr]);
        let out = run_cli(&all, stdin, WAIT);
        if out.timed_out {
            panic!("`shardlog {}` did not finish within {WAIT:?}\n{out}\n{}", all.join(" "), self.diagnostics());
        }
        out
    }

    /// The Prometheus text, each series summed over shards (`name` → sum); series split by
    /// other labels (quantiles, histogram buckets) are skipped.
    pub fn metrics(&self) -> Metrics {
        let addr = self.metrics_addr.as_deref().expect("started without metrics");
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("bad HTTP response: {text:?}"));
        assert!(head.starts_with("HTTP/1.0 200"), "{head}");
        let mut sums = HashMap::new();
        for line in body.lines().filter(|l| !l.starts_with('#') && !l.contains("quantile=") && !l.contains("le=")) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let name = series.split('{').next().unwrap_or(series);
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad metrics line {line:?}"));
            *sums.entry(name.to_owned()).or_insert(0.0) += value;
        }
        Metrics { sums, text: body.to_owned() }
    }
}

/// A block of consecutive free ports, reserved among concurrently running tests.
///
/// Why not `--listen 127.0.0.1:0`: the server picks a port by binding port 0 and releasing it,
/// then every shard binds it with SO_REUSEPORT — which another server (same user) may do too,
/// so two servers started at once can end up sharing a port, each getting part of the other's
/// connections. Here ports come from below the kernel's ephemeral range (which `bind(0)` and
/// outgoing connections use), a block at a time, each block claimed with an exclusive file lock
/// that is released when its holder exits, however it exits.
pub struct PortBlock {
    pub base: u16,
    _lock: Option<std::fs::File>,
}

impl PortBlock {
    const SIZE: u16 = 8;

    pub fn reserve(count: u16) -> PortBlock {
        assert!(count <= PortBlock::SIZE);
        let (first, last) = port_region();
        let dir = std::env::temp_dir().join("shardlog-itest-ports");
        std::fs::create_dir_all(&dir).unwrap();
        let blocks = (last - first) / PortBlock::SIZE;
        let start = (std::process::id() as u16).wrapping_mul(7919) % blocks;
        for i in 0..blocks {
            let base = first + ((start + i) % blocks) * PortBlock::SIZE;
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join(format!("ports-{base}.lock")))
                .unwrap();
            if lock.try_lock().is_err() {
                continue; // Another test holds this block.
            }
            let free = (base..base + count).all(|port| TcpListener::bind(("127.0.0.1", port)).is_ok());
            if free {
                return PortBlock { base, _lock: Some(lock) };
            }
        }
        panic!("no free block of {count} ports in {first}..{last}");
    }
}

/// Ports outside the kernel's ephemeral range.
fn port_region() -> (u16, u16) {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut bounds = range.split_whitespace().filter_map(|v| v.parse::<u16>().ok());
    let (low, high) = (bounds.next().unwrap_or(32768), bounds.next().unwrap_or(60999));
    if low >= 12_000 {
        (10_000, low - 1)
    } else {
        assert!(high < 60_000, "no port region outside the ephemeral range {low}..{high}");
        (high + 1, 65_000)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Debug, Clone)]
pub struct Metrics {
    sums: HashMap<String, f64>,
    pub text: String,
}

impl Metrics {
    /// The sum over shards of the counter or gauge `name` (e.g. `shardlog_forwards_out_total`);
    /// panics if absent.
    pub fn get(&self, name: &str) -> u64 {
        let sum = *self.sums.get(name).unwrap_or_else(|| panic!("no metric {name} in:\n{}", self.text));
        assert!(sum >= 0.0 && sum.fract() == 0.0, "{name} is not a count: {sum}");
        sum as u64
    }
}

/// What a CLI run printed.
#[derive(Debug)]
pub struct CliOutput {
    pub args: Vec<String>,
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

impl std::fmt::Display for CliOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`shardlog {}`: {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.args.join(" "),
            self.status,
            self.stdout,
            self.stderr
        )
    }
}

impl CliOutput {
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// Asserts exit status 0; returns stdout.
    pub fn success(&self) -> &str {
        assert_eq!(self.code(), Some(0), "{self}");
        &self.stdout
    }

    pub fn stdout_lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// Asserts a failure with exit status `code` reported as exactly one `error: …` line on
    /// stderr (nothing on stdout); returns that line.
    pub fn one_line_error(&self, code: i32) -> &str {
        assert_eq!(self.code(), Some(code), "{self}");
        let lines: Vec<&str> = self.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "expected one error line\n{self}");
        assert!(lines[0].starts_with("error: "), "{self}");
        assert!(self.stdout.is_empty(), "{self}");
        lines[0]
    }
}

/// Runs the binary with `args`, feeding `stdin`; kills it after `timeout`.
pub fn run_cli(args: &[&str], stdin: &[u8], timeout: Duration) -> CliOutput {
    run_program(binary(), args, stdin, timeout)
}

/// Runs a program with `stdin`, killing it after `timeout`.
pub fn run_program(program: &str, args: &[&str], stdin: &[u8], timeout: Duration) -> CliOutput {
    let mut child = Command::new(program)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let read_all = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = r.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().unwrap()));
    let stderr = read_all(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let (status, timed_out) = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break (Some(status), false);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break (None, true);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = writer.join();
    CliOutput {
        args: args.iter().map(|s| s.to_string()).collect(),
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
        timed_out,
    }
}

/// Runs `make()`'s future on a fresh glommio executor thread and returns its output.
pub fn on_executor<G, F, T>(make: G) -> T
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    raise_memlock_limit();
    glommio::LocalExecutorBuilder::default().spawn(make).unwrap().join().unwrap()
}

/// `future`'s output, or `None` after `timeout`.
pub async fn within<F: Future>(timeout: Duration, future: F) -> Option<F::Output> {
    futures_lite::future::or(async { Some(future.await) }, async {
        glommio::timer::sleep(timeout).await;
        None
    })
    .await
}

/// glommio's io_uring rings need locked memory; raise the soft limit to the hard one.
pub fn raise_memlock_limit() {
    // SAFETY: getrlimit / setrlimit only read and write the struct passed to them.
    unsafe {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit);
        }
    }
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `timeout`; panics with
/// `what()` otherwise.
pub fn eventually<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>, what: impl Fn() -> String) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?}: {}", what());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
