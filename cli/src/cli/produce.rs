//! `shardlog produce TOPIC`: every line of stdin becomes a record.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Stdin};
use std::rc::Rc;

use clap::{Args, ValueEnum};
use client::{Acks, ClientError, Delivery, ErrorCode, Producer, ProducerOptions};

use super::{BrokerArgs, CliError};

#[derive(Args, Debug)]
pub struct ProduceArgs {
    topic: String,
    /// Split each line at the first SEP into key and value ("1,mitch" → key "1", value
    /// "mitch"); without it a line is the value and the key is null.
    #[arg(long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// Send every record to this partition (default: by key, or sticky without a key).
    #[arg(long, value_name = "N")]
    partition: Option<u32>,
    /// none: do not wait for the broker; leader: once the partition accepted the record (with
    /// the topic's durability); durable: after an fdatasync covering it.
    #[arg(long, value_enum, default_value_t = AcksArg::Leader)]
    acks: AcksArg,
    /// How long a batch waits for more records.
    #[arg(long, value_name = "MS", default_value_t = 5)]
    linger_ms: u64,
    /// Send a partition's batch once it holds this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 256 << 10)]
    batch_bytes: usize,
    #[command(flatten)]
    pub broker: BrokerArgs,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum AcksArg {
    None,
    Leader,
    Durable,
}

/// Lines read per blocking read, at most (bounds memory with fast input).
const LINES_PER_READ_MAX: usize = 10_000;
const BYTES_PER_READ_MAX: usize = 4 << 20;
/// Deliveries kept before the oldest is awaited (bounds memory with fast input).
const DELIVERIES_MAX: usize = 100_000;

pub async fn run(args: ProduceArgs) -> Result<(), CliError> {
    let client = Rc::new(args.broker.connect().await?);
    let partitions = client.partition_count(&args.topic).await?;
    if let Some(p) = args.partition {
        if p >= partitions {
            let what = format!("{}-{p} ({} has {partitions} partitions)", args.topic, args.topic);
            return Err(ClientError::broker(ErrorCode::UnknownTopicOrPartition, what).into());
        }
    }
    let acks = match args.acks {
        AcksArg::None => Acks::None,
        AcksArg::Leader => Acks::Leader,
        AcksArg::Durable => Acks::Durable,
    };
    let options = ProducerOptions {
        acks,
        linger_ms: args.linger_ms,
        batch_bytes: args.batch_bytes,
        ..ProducerOptions::default()
    };
    let producer = Producer::new(client, options);
    let separator = args.key_separator.as_deref().map(str::as_bytes).filter(|s| !s.is_empty());

    let mut stdin = LineReader { reader: Some(BufReader::new(std::io::stdin())) };
    let mut deliveries: VecDeque<(u64, Delivery)> = VecDeque::new();
    let mut report = Report::default();
    let mut line_number = 0u64;
    // An input error stops reading; what was enqueued is still flushed and reported.
    let mut input_error: Option<String> = None;
    'input: loop {
        let (lines, eof) = match stdin.read_lines().await {
            Ok(read) => read,
            Err(e) => {
                input_error = Some(format!("reading stdin: {e}"));
                break;
            }
        };
        for line in lines {
            line_number += 1;
            let (key, value) = match separator {
                None => (None, &line[..]),
                Some(sep) => match find(&line, sep) {
                    Some(at) => (Some(&line[..at]), &line[at + sep.len()..]),
                    None => {
                        input_error = Some(format!(
                            "line {line_number} has no key separator {:?}: {:?}",
                            String::from_utf8_lossy(sep),
                            String::from_utf8_lossy(&line)
                        ));
                        break 'input;
                    }
                },
            };
            match producer.enqueue(&args.topic, args.partition, key, Some(value), &[], None).await {
                Ok(delivery) => deliveries.push_back((line_number, delivery)),
                Err(error) => {
                    report.failed(line_number, error);
                    break 'input;
                }
            }
            if deliveries.len() > DELIVERIES_MAX {
                if let Some((line, delivery)) = deliveries.pop_front() {
                    report.add(line, delivery.await);
                }
            }
        }
        if eof {
            break;
        }
    }
    producer.flush().await;
    for (line, delivery) in deliveries {
        report.add(line, delivery.await);
    }
    if let Some((line, error)) = report.first_error {
        let not = report.failures;
        return Err(CliError(format!(
            "{not} of {} records were not acknowledged; first failure (line {line}): {error}",
            report.records
        )));
    }
    if let Some(message) = input_error {
        return Err(CliError(format!("{message} ({} records before it were acknowledged)", report.records)));
    }
    Ok(())
}

#[derive(Default)]
struct Report {
    records: u64,
    failures: u64,
    first_error: Option<(u64, ClientError)>,
}

impl Report {
    fn add(&mut self, line: u64, result: Result<client::RecordAck, ClientError>) {
        match result {
            Ok(_) => self.records += 1,
            Err(error) => self.failed(line, error),
        }
    }

    fn failed(&mut self, line: u64, error: ClientError) {
        self.records += 1;
        self.failures += 1;
        self.first_error.get_or_insert((line, error));
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads stdin on glommio's blocking pool, so the executor keeps sending while it waits.
struct LineReader {
    reader: Option<BufReader<Stdin>>,
}

impl LineReader {
    /// The next lines (without their `\n` / `\r\n`): at least one unless at end of input, and
    /// whatever else is already buffered. `true` once stdin is exhausted.
    async fn read_lines(&mut self) -> std::io::Result<(Vec<Vec<u8>>, bool)> {
        let Some(mut reader) = self.reader.take() else {
            return Ok((Vec::new(), true));
        };
        let (reader, result) = glommio::executor()
            .spawn_blocking(move || {
                let result = read_buffered_lines(&mut reader);
                (reader, result)
            })
            .await;
        if matches!(result, Ok((_, false))) {
            self.reader = Some(reader);
        }
        result
    }
}

fn read_buffered_lines<R: std::io::Read>(reader: &mut BufReader<R>) -> std::io::Result<(Vec<Vec<u8>>, bool)> {
    let mut lines = Vec::new();
    let mut bytes = 0;
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok((lines, true));
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        bytes += line.len();
        lines.push(line);
        if reader.buffer().is_empty() || lines.len() >= LINES_PER_READ_MAX || bytes >= BYTES_PER_READ_MAX {
            return Ok((lines, false));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_without_terminators() {
        let mut input = BufReader::new(std::io::Cursor::new(b"1,mitch\r\n2,jane\n\nlast".to_vec()));
        let (lines, eof) = read_buffered_lines(&mut input).unwrap();
        assert!(!eof, "end of input is reported by the next read");
        assert_eq!(lines, vec![b"1,mitch".to_vec(), b"2,jane".to_vec(), b"".to_vec(), b"last".to_vec()]);
        assert_eq!(read_buffered_lines(&mut input).unwrap(), (Vec::new(), true));
    }

    #[test]
    fn separator_splits_at_the_first_occurrence() {
        assert_eq!(find(b"1,mitch,x", b","), Some(1));
        assert_eq!(find(b"a::b", b"::"), Some(1));
        assert_eq!(find(b"ab", b","), None);
    }
}
