//! `shardlog serve`: starts the broker and runs it until SIGINT / SIGTERM.

use std::io::Write;

use shardlog::config::{ServeArgs, ServeConfig};
use shardlog::Node;
use signal_hook::consts::{SIGINT, SIGTERM};

pub fn run(args: &ServeArgs) -> i32 {
    let config = match ServeConfig::resolve(args) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("error: {message}");
            return 1;
        }
    };
    let shards = config.shards;
    let mut broker = match Node::start(config) {
        Ok(broker) => broker,
        Err(e) => {
            eprintln!("error: cannot start the broker: {e}");
            return 1;
        }
    };
    // A second signal while shutting down exits at once.
    let stop = broker.stop_flag();
    for signal in [SIGINT, SIGTERM] {
        let registered = signal_hook::flag::register_conditional_shutdown(signal, 1, stop.clone())
            .and_then(|_| signal_hook::flag::register(signal, stop.clone()));
        if let Err(e) = registered {
            eprintln!("error: cannot handle signal {signal}: {e}");
            broker.shutdown();
            return 1;
        }
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "shardlog listening on {} with {shards} shard{}",
        broker.listen,
        if shards == 1 { "" } else { "s" }
    );
    for (shard, address) in broker.shard_addresses.iter().enumerate() {
        let _ = writeln!(out, "  shard {shard}: {address}");
    }
    if let Some(metrics) = broker.metrics_listen {
        let _ = writeln!(out, "  metrics: http://{metrics}/metrics");
    }
    if let Some(kafka) = broker.kafka_listen {
        let _ = writeln!(out, "  kafka: {kafka}");
        for (shard, address) in broker.kafka_shard_addresses.iter().enumerate() {
            let _ = writeln!(out, "  kafka broker {shard}: {address}");
        }
    }
    let _ = out.flush();
    drop(out);
    broker.wait();
    0
}
