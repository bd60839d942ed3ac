//! `shardlog` command line: flags (clap derive) and the glue that runs each command.
//!
//! Client commands run on one glommio executor. Every failure ends as one `error: …` line on
//! stderr and exit status 1 (clap's usage errors exit with 2).

mod cluster;
mod consume;
mod group;
mod produce;
mod serve;
mod topic;

use std::future::Future;

use clap::{Args, Parser, Subcommand, ValueEnum};
use client::{Client, ClientError, ClientOptions, Routing, REQUEST_TIMEOUT_MS_DEFAULT};
use shardlog::config::ServeArgs;

#[derive(Parser, Debug)]
#[command(name = "shardlog", version, about = "shardlog: a Kafka-model log broker, one shard per core")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the broker.
    Serve(ServeArgs),
    /// Create, list, describe, grow and delete topics.
    Topic {
        #[command(subcommand)]
        command: topic::TopicCommand,
    },
    /// Send each line of stdin as a record (like kafka-console-producer).
    Produce(produce::ProduceArgs),
    /// Print records, one per line (like kafka-console-consumer).
    Consume(consume::ConsumeArgs),
    /// List, describe (with lag) and delete consumer groups (like kafka-consumer-groups).
    Group {
        #[command(subcommand)]
        command: group::GroupCommand,
    },
    /// Move partitions between nodes, list moves, elect preferred leaders, drain a node (a
    /// cluster; like kafka-reassign-partitions and kafka-leader-election).
    Cluster {
        #[command(subcommand)]
        command: cluster::ClusterCommand,
    },
}

/// Flags every client command takes.
#[derive(Args, Debug, Clone)]
pub struct BrokerArgs {
    /// Broker address, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9292", alias = "bootstrap-server")]
    pub broker: String,
    /// How partition requests reach their shard: straight to the owning shard's own listener,
    /// or through the --broker address (the broker forwards them).
    #[arg(long, value_enum, default_value_t = RoutingArg::ShardAware)]
    pub routing: RoutingArg,
    /// How long to wait for each response.
    #[arg(long, value_name = "MS", default_value_t = REQUEST_TIMEOUT_MS_DEFAULT)]
    pub request_timeout_ms: u64,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutingArg {
    ShardAware,
    Forward,
}

impl BrokerArgs {
    pub async fn connect(&self) -> Result<Client, ClientError> {
        let routing = match self.routing {
            RoutingArg::ShardAware => Routing::ShardAware,
            RoutingArg::Forward => Routing::Forward,
        };
        let options =
            ClientOptions { routing, request_timeout_ms: self.request_timeout_ms, ..ClientOptions::default() };
        Client::connect(&self.broker, options).await
    }
}

/// Parses the command line, runs the command and returns the exit status.
pub fn main() -> i32 {
    let cli = Cli::parse();
    raise_memlock_limit();
    match cli.command {
        Command::Serve(args) => {
            init_tracing("info");
            serve::run(&args)
        }
        Command::Topic { command } => {
            init_tracing("warn");
            run_client(move || topic::run(command))
        }
        Command::Produce(args) => {
            init_tracing("warn");
            run_client(move || produce::run(args))
        }
        Command::Consume(args) => {
            init_tracing("warn");
            run_client(move || consume::run(args))
        }
        Command::Group { command } => {
            init_tracing("warn");
            run_client(move || group::run(command))
        }
        Command::Cluster { command } => {
            init_tracing("warn");
            run_client(move || cluster::run(command))
        }
    }
}

/// The failure of a command: printed as one line.
#[derive(Debug)]
pub struct CliError(pub String);

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        CliError(e.to_string())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError(e.to_string())
    }
}

/// Runs a client command on a single glommio executor; reports its error.
fn run_client<G, F>(command: G) -> i32
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = Result<(), CliError>> + 'static,
{
    let outcome = glommio::LocalExecutorBuilder::default()
        .name("shardlog-cli")
        .spawn(command)
        .map_err(|e| CliError(format!("cannot start the I/O executor: {e}")))
        .and_then(|handle| handle.join().map_err(|e| CliError(format!("I/O executor failed: {e}"))))
        .and_then(|result| result);
    match outcome {
        Ok(()) => 0,
        Err(CliError(message)) => {
            eprintln!("error: {message}");
            1
        }
    }
}

/// glommio's io_uring rings need locked memory; raise the soft limit as far as allowed.
fn raise_memlock_limit() {
    // SAFETY: getrlimit / setrlimit only read and write the struct passed to them.
    unsafe {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) != 0 {
            return;
        }
        let wanted = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
        if libc::setrlimit(libc::RLIMIT_MEMLOCK, &wanted) != 0 {
            limit.rlim_cur = limit.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit);
        }
    }
}

/// Logs to stderr, filtered by RUST_LOG (default: `default_level`). A log line that cannot be
/// written (stderr on a full disk, a closed pipe) is dropped: tracing-subscriber's default is
/// to report that with `eprintln!`, which panics when stderr cannot be written — on a shard,
/// that took the broker down (exit 70) because its log file's disk filled up.
fn init_tracing(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .log_internal_errors(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_the_quick_start_commands() {
        let cli = Cli::try_parse_from(["shardlog", "topic", "create", "users", "--partitions", "4"]).unwrap();
        assert!(matches!(cli.command, Command::Topic { .. }));
        let cli = Cli::try_parse_from(["shardlog", "produce", "users", "--key-separator", ","]).unwrap();
        let Command::Produce(args) = cli.command else { panic!() };
        assert_eq!(args.key_separator.as_deref(), Some(","));
        assert_eq!(args.broker.broker, "127.0.0.1:9292");
        let cli = Cli::try_parse_from([
            "shardlog",
            "consume",
            "users",
            "--from-beginning",
            "--print-key",
            "--max-messages",
            "4",
            "--broker",
            "127.0.0.1:19292",
        ])
        .unwrap();
        let Command::Consume(args) = cli.command else { panic!() };
        assert!(args.from_beginning && args.print_key);
        assert_eq!(args.max_messages, Some(4));
        assert_eq!(args.broker.broker, "127.0.0.1:19292");
    }

    #[test]
    fn rejects_bad_flags() {
        assert!(Cli::try_parse_from(["shardlog", "produce", "users", "--acks", "all"]).is_err());
        assert!(Cli::try_parse_from(["shardlog", "topic", "create", "t", "--durability", "sometimes"]).is_err());
        assert!(Cli::try_parse_from(["shardlog", "topic", "create", "t", "--durability", "interval:100"]).is_ok());
        assert!(Cli::try_parse_from(["shardlog", "consume", "t", "--group", "g", "--partition", "1"]).is_err());
    }
}
