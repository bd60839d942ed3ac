//! What `shardlog serve` prints when it is listening.

use std::net::SocketAddr;

/// What a node prints at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Printed {
    pub native: SocketAddr,
    pub native_shards: Vec<SocketAddr>,
    pub kafka: Option<SocketAddr>,
    pub kafka_shards: Vec<SocketAddr>,
    pub metrics: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy)]
pub struct Expected {
    pub shards: usize,
    pub kafka: bool,
    pub metrics: bool,
}

/// The addresses in `serve`'s startup lines, once all expected ones are there; lines it does
/// not know (a future "cluster: ADDR") are skipped:
/// "shardlog listening on ADDR with N shard(s)", "  shard i: ADDR",
/// "  metrics: http://ADDR/metrics", "  kafka: ADDR", "  kafka broker i: ADDR".
pub fn parse_addresses(lines: &[String], expected: &Expected) -> Option<Printed> {
    let mut native = None;
    let mut native_shards = vec![None; expected.shards];
    let mut kafka = None;
    let mut kafka_shards = vec![None; expected.shards];
    let mut metrics = None;
    for line in lines {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("shardlog listening on ") {
            native = rest.split_whitespace().next().and_then(|a| a.parse::<SocketAddr>().ok());
        } else if let Some(rest) = line.strip_prefix("kafka broker ") {
            if let Some((i, addr)) = indexed(rest) {
                if let Some(slot) = kafka_shards.get_mut(i) {
                    *slot = Some(addr);
                }
            }
        } else if let Some(rest) = line.strip_prefix("kafka: ") {
            kafka = rest.trim().parse().ok();
        } else if let Some(rest) = line.strip_prefix("shard ") {
            if let Some((i, addr)) = indexed(rest) {
                if let Some(slot) = native_shards.get_mut(i) {
                    *slot = Some(addr);
                }
            }
        } else if let Some(rest) = line.strip_prefix("metrics: http://") {
            metrics = rest.strip_suffix("/metrics").and_then(|a| a.parse().ok());
        }
    }
    let native = native?;
    let native_shards: Vec<SocketAddr> = native_shards.into_iter().collect::<Option<_>>()?;
    let (kafka, kafka_shards) = if expected.kafka {
        (Some(kafka?), kafka_shards.into_iter().collect::<Option<Vec<_>>>()?)
    } else {
        (None, Vec::new())
    };
    if expected.metrics && metrics.is_none() {
        return None;
    }
    Some(Printed { native, native_shards, kafka, kafka_shards, metrics })
}

/// "i: ADDR" → (i, ADDR).
fn indexed(text: &str) -> Option<(usize, SocketAddr)> {
    let (index, addr) = text.split_once(':')?;
    Some((index.trim().parse().ok()?, addr.trim().parse().ok()?))
}
