//! The seam between the workload and a wire protocol. The workload (`producer.rs`,
//! `consumer.rs`) only talks to these traits; `native.rs` implements them with shardlog's Rust
//! client. A Kafka-protocol driver (issue #5) implements the same three traits and is chosen
//! by `--protocol kafka` in `workload/mod.rs`.
//!
//! Everything here lives on one glommio executor (the client is `Rc`-based), so the futures
//! need not be `Send`.

use std::future::Future;
use std::time::Instant;

use crate::config::AckMode;
use crate::error::LoadgenError;

/// Producer knobs the driver maps onto its client.
#[derive(Debug, Clone)]
pub struct ProducerSettings {
    pub acks: AckMode,
    pub linger_ms: u64,
    pub batch_bytes: usize,
    pub buffer_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub group: String,
    pub topics: Vec<String>,
    /// Start at offset 0 (our topics are new, so this is also "everything produced").
    pub from_beginning: bool,
    /// This consumer's index in its group and the group's size: drivers without
    /// broker-side assignment (Kafka) split the partitions statically by them.
    pub member: usize,
    pub members: usize,
}

/// One received record, as the workload needs it.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub value_bytes: usize,
    /// The producer's intended send time (µs since the Unix epoch), from the header.
    pub sent_at_us: Option<u64>,
}

/// One outgoing record.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub topic: &'a str,
    pub partition: Option<u32>,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    /// Intended send time, µs since the Unix epoch: written into the record for the consumer.
    pub sent_at_us: u64,
}

#[allow(async_fn_in_trait)] // executor-local by design: see the module comment.
pub trait Driver: Sized {
    type Producer: ProducerDriver;
    type Consumer: ConsumerDriver;

    /// Connects to the first address of the bootstrap list (`HOST:PORT,HOST:PORT`, see
    /// `connect_first`) that answers.
    async fn connect(bootstrap: &str) -> Result<Self, LoadgenError>;
    /// Creates the topics and waits until they can be produced to. `replication_factor`:
    /// `None` is the broker's default.
    async fn create_topics(
        &self,
        topics: &[String],
        partitions: u32,
        durability: &str,
        replication_factor: Option<u32>,
    ) -> Result<(), LoadgenError>;
    /// Deletes the topics (a driver that cannot leaves them).
    async fn delete_topics(&self, topics: &[String]) -> Result<(), LoadgenError>;
    fn producer(&self, settings: &ProducerSettings) -> Self::Producer;
    fn consumer(&self, settings: &ConsumerSettings) -> Self::Consumer;
}

#[allow(async_fn_in_trait)]
pub trait ProducerDriver {
    /// Resolves when the record is acknowledged (or failed), with the instant the client
    /// learned of the acknowledgement: its latency does not depend on when the ack is polled.
    type Ack: Future<Output = Result<Instant, String>> + 'static;

    /// Hands the record to the client's batching; returns once it is buffered (waiting for
    /// buffer space if the buffer is full).
    async fn send(&self, record: Outgoing<'_>) -> Result<Self::Ack, String>;
    /// Sends everything buffered and waits for every acknowledgement.
    async fn flush(&self);
}

#[allow(async_fn_in_trait)]
pub trait ConsumerDriver {
    /// Appends the records that arrived (waiting briefly for some) to `out`.
    async fn poll(&self, out: &mut Vec<Received>) -> Result<(), String>;
    async fn close(&self);
}

/// Tries each address of a bootstrap list in order and returns the first connection made;
/// the error names every address and why it failed ("connecting to `what` ADDR: …").
pub async fn connect_first<T, E, F, Fut>(bootstrap: &str, what: &str, mut connect: F) -> Result<T, LoadgenError>
where
    E: std::fmt::Display,
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let addresses = crate::config::bootstrap_list(bootstrap);
    let mut failures = Vec::with_capacity(addresses.len());
    for address in &addresses {
        match connect((*address).to_owned()).await {
            Ok(connected) => return Ok(connected),
            Err(e) => failures.push(format!("connecting to {what} {address}: {e}")),
        }
    }
    match failures.len() {
        0 => Err(LoadgenError::Config(format!("no HOST:PORT in the bootstrap list {bootstrap:?}"))),
        1 => Err(LoadgenError::Client(failures.remove(0))),
        _ => Err(LoadgenError::Client(format!("no {what} of {bootstrap} answered ({})", failures.join("; ")))),
    }
}
