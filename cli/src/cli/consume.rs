//! `shardlog consume TOPIC`: prints records like kafka-console-consumer.

use std::collections::HashMap;
use std::io::{ErrorKind, Write};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use client::{Consumer, ConsumerOptions, ConsumerRecord};
use signal_hook::consts::{SIGINT, SIGTERM};

use super::{BrokerArgs, CliError};

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    topic: String,
    /// Without a committed offset, start at the earliest record (default: only new records).
    #[arg(long)]
    pub from_beginning: bool,
    /// Consume as a member of this group (partitions are shared among its members) and commit
    /// offsets on exit.
    #[arg(long, value_name = "G", conflicts_with = "partition")]
    group: Option<String>,
    /// Print `<key>\t` before the value.
    #[arg(long)]
    pub print_key: bool,
    /// Print `CreateTime:<ms>\t` first.
    #[arg(long)]
    print_timestamp: bool,
    /// Print `<header>:<value>,…\t` (or `NO_HEADERS\t`) before the key.
    #[arg(long)]
    print_headers: bool,
    /// Print `Partition:<n>\t` after the timestamp.
    #[arg(long)]
    print_partition: bool,
    /// Print `Offset:<n>\t` after the partition.
    #[arg(long)]
    print_offset: bool,
    /// Exit after printing this many records.
    #[arg(long, value_name = "N")]
    pub max_messages: Option<u64>,
    /// Exit when no record arrived for this long.
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
    /// Read only this partition.
    #[arg(long, value_name = "N")]
    partition: Option<u32>,
    #[command(flatten)]
    pub broker: BrokerArgs,
}

/// Longest a single poll waits; also how quickly a signal or the timeout is noticed.
const POLL_WAIT_MS_MAX: u64 = 500;

pub async fn run(args: ConsumeArgs) -> Result<(), CliError> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| CliError(format!("cannot handle signal {signal}: {e}")))?;
    }
    let client = Rc::new(args.broker.connect().await?);
    let poll_wait_ms = args.timeout_ms.map_or(POLL_WAIT_MS_MAX, |t| t.clamp(1, POLL_WAIT_MS_MAX));
    let options = ConsumerOptions {
        group: args.group.clone(),
        topics: vec![args.topic.clone()],
        partitions: args.partition.map(|p| vec![p]),
        from_beginning: args.from_beginning,
        fetch_wait_ms_max: poll_wait_ms as u32,
        ..ConsumerOptions::default()
    };
    let consumer = Consumer::new(client, options);
    let consumed = consume(&args, &consumer, &stop).await;
    let closed = consumer.close().await;
    if let Ok(count) = &consumed {
        eprintln!("Processed a total of {count} messages");
    }
    consumed?;
    closed.map_err(|e| CliError(format!("committing offsets on exit: {e}")))
}

/// Prints records until a limit is reached; returns how many were printed.
async fn consume(args: &ConsumeArgs, consumer: &Consumer, stop: &AtomicBool) -> Result<u64, CliError> {
    let max = args.max_messages.unwrap_or(u64::MAX);
    let idle_limit = args.timeout_ms.map(Duration::from_millis);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut printed = 0u64;
    let mut last_record = Instant::now();
    while printed < max && !stop.load(Ordering::Relaxed) {
        if idle_limit.is_some_and(|limit| last_record.elapsed() >= limit) {
            break;
        }
        let records = consumer.poll().await?;
        if records.is_empty() {
            continue;
        }
        last_record = Instant::now();
        let room = usize::try_from(max - printed).unwrap_or(usize::MAX);
        for record in records.iter().take(room) {
            if let Err(e) = print(&mut out, args, record) {
                return if e.kind() == ErrorKind::BrokenPipe { Ok(printed) } else { Err(e.into()) };
            }
            printed += 1;
        }
        if records.len() > room {
            rewind(consumer, &records[room..]);
        }
        match out.flush() {
            Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(printed),
            other => other?,
        }
    }
    Ok(printed)
}

/// Records returned but not printed are read again by the next consumer of the group: move
/// each partition's position back to its first unprinted record before committing.
fn rewind(consumer: &Consumer, unprinted: &[ConsumerRecord]) {
    let mut first: HashMap<(&str, u32), u64> = HashMap::new();
    for r in unprinted {
        let offset = first.entry((&r.topic, r.partition)).or_insert(r.offset);
        *offset = (*offset).min(r.offset);
    }
    for ((topic, partition), offset) in first {
        consumer.seek(topic, partition, offset);
    }
}

fn print(out: &mut impl Write, args: &ConsumeArgs, record: &ConsumerRecord) -> std::io::Result<()> {
    if args.print_timestamp {
        write!(out, "CreateTime:{}\t", record.timestamp)?;
    }
    if args.print_partition {
        write!(out, "Partition:{}\t", record.partition)?;
    }
    if args.print_offset {
        write!(out, "Offset:{}\t", record.offset)?;
    }
    if args.print_headers {
        if record.headers.is_empty() {
            out.write_all(b"NO_HEADERS")?;
        }
        for (i, header) in record.headers.iter().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            out.write_all(&header.key)?;
            out.write_all(b":")?;
            write_nullable(out, header.value.as_deref())?;
        }
        out.write_all(b"\t")?;
    }
    if args.print_key {
        write_nullable(out, record.key.as_deref())?;
        out.write_all(b"\t")?;
    }
    write_nullable(out, record.value.as_deref())?;
    out.write_all(b"\n")
}

fn write_nullable(out: &mut impl Write, bytes: Option<&[u8]>) -> std::io::Result<()> {
    out.write_all(bytes.unwrap_or(b"null"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use clap::Parser;
    use client::Header;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ConsumeArgs,
    }

    fn args(flags: &[&str]) -> ConsumeArgs {
        let mut argv = vec!["consume", "t"];
        argv.extend_from_slice(flags);
        Wrapper::try_parse_from(argv).unwrap().args
    }

    fn record(key: Option<&'static [u8]>, headers: Vec<Header>) -> ConsumerRecord {
        ConsumerRecord {
            topic: Rc::from("t"),
            partition: 2,
            offset: 7,
            timestamp: 1_700_000_000_000,
            key: key.map(Bytes::from_static),
            value: Some(Bytes::from_static(b"mitch")),
            headers,
        }
    }

    fn printed(flags: &[&str], r: &ConsumerRecord) -> String {
        let mut out = Vec::new();
        print(&mut out, &args(flags), r).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn formats_like_the_kafka_console_consumer() {
        let r = record(Some(b"1"), Vec::new());
        assert_eq!(printed(&[], &r), "mitch\n");
        assert_eq!(printed(&["--print-key"], &r), "1\tmitch\n");
        assert_eq!(printed(&["--print-key", "--print-timestamp"], &r), "CreateTime:1700000000000\t1\tmitch\n");
        assert_eq!(printed(&["--print-key"], &record(None, Vec::new())), "null\tmitch\n");
        assert_eq!(printed(&["--print-headers"], &r), "NO_HEADERS\tmitch\n");
        let headers = vec![
            Header { key: Bytes::from_static(b"a"), value: Some(Bytes::from_static(b"1")) },
            Header { key: Bytes::from_static(b"b"), value: None },
        ];
        assert_eq!(printed(&["--print-headers"], &record(None, headers)), "a:1,b:null\tmitch\n");
        assert_eq!(printed(&["--print-partition", "--print-offset"], &r), "Partition:2\tOffset:7\tmitch\n");
    }
}
