//! `shardlog topic …`: topic administration.

use std::io::Write;

use clap::{Args, Subcommand};
use client::{ClientError, ErrorCode, TopicSettings};

use super::{BrokerArgs, CliError};

#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List topic names.
    List {
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Show a topic's settings and, per partition, its shard, offsets and size.
    Describe {
        name: String,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Grow a topic to a total number of partitions.
    AddPartitions {
        name: String,
        /// The new total number of partitions (more than now).
        #[arg(long, value_name = "TOTAL")]
        partitions: u32,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Delete a topic and its data.
    Delete {
        name: String,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Show or change a topic's configs (Kafka's topic config names, e.g. retention.ms).
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print every config of a topic: NAME=VALUE, and whether it is set or the default, and
    /// applied or only kept.
    Get {
        name: String,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Set configs (KEY=VALUE ...) and reset others to their defaults (--reset KEY).
    Set {
        name: String,
        /// KEY=VALUE pairs, e.g. retention.ms=3600000.
        #[arg(value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Return this config to its default (repeatable).
        #[arg(long, value_name = "KEY")]
        reset: Vec<String>,
        #[command(flatten)]
        broker: BrokerArgs,
    },
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    name: String,
    /// Number of partitions.
    #[arg(long, value_name = "N", default_value_t = 1)]
    partitions: u32,
    /// Delete segments older than this (default: keep forever).
    #[arg(long, value_name = "MS")]
    retention_ms: Option<u64>,
    /// Delete the oldest segments while a partition is larger than this (default: no limit).
    #[arg(long, value_name = "BYTES")]
    retention_bytes: Option<u64>,
    /// Roll to a new segment at this size.
    #[arg(long, value_name = "BYTES")]
    segment_bytes: Option<u64>,
    /// Roll to a new segment after this long.
    #[arg(long, value_name = "MS")]
    segment_ms: Option<u64>,
    /// When an append is acknowledged: after fdatasync (sync), with an fdatasync at most MS
    /// later (interval:MS), or without syncing (none).
    #[arg(long, value_name = "sync|interval:MS|none", value_parser = parse_durability)]
    durability: Option<String>,
    /// Copies of each partition on distinct nodes (a cluster; default: the broker's
    /// --default-replication-factor).
    #[arg(long, value_name = "N")]
    replication_factor: Option<u32>,
    /// acks=all produces are refused while fewer replicas are in sync (default 1).
    #[arg(long, value_name = "N")]
    min_insync_replicas: Option<u32>,
    /// Let a replica outside the ISR become leader when none in it can (may lose
    /// acknowledged records; default off).
    #[arg(long)]
    unclean_leader_election: bool,
    #[command(flatten)]
    broker: BrokerArgs,
}

fn parse_durability(text: &str) -> Result<String, String> {
    text.parse::<engine::Durability>().map(|d| d.to_string())
}

pub async fn run(command: TopicCommand) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match command {
        TopicCommand::Create(args) => {
            let client = args.broker.connect().await?;
            let settings = TopicSettings {
                retention_ms: args.retention_ms,
                retention_bytes: args.retention_bytes,
                segment_bytes: args.segment_bytes,
                segment_ms: args.segment_ms,
                durability: args.durability,
                replication_factor: args.replication_factor,
                min_insync_replicas: args.min_insync_replicas,
                unclean_leader_election: args.unclean_leader_election.then_some(true),
            };
            client.create_topic(&args.name, args.partitions, settings).await?;
            writeln!(out, "Created topic {}.", args.name)?;
        }
        TopicCommand::List { broker } => {
            let client = broker.connect().await?;
            let metadata = client.metadata(None, false).await?;
            for topic in metadata.topics {
                writeln!(out, "{}", topic.name)?;
            }
        }
        TopicCommand::Describe { name, broker } => {
            let client = broker.connect().await?;
            let metadata = client.metadata(Some(vec![name.clone()]), true).await?;
            let Some(topic) = metadata.topics.into_iter().find(|t| t.name == name) else {
                return Err(ClientError::broker(ErrorCode::UnknownTopicOrPartition, &name).into());
            };
            if !topic.error.is_ok() {
                return Err(ClientError::broker(topic.error, &name).into());
            }
            let optional = |v: Option<u64>| v.map_or_else(|| "none".to_owned(), |v| v.to_string());
            writeln!(
                out,
                "Topic: {}\tTopicId: {}\tPartitionCount: {}\tDurability: {}\tSegmentBytes: {}\tRetentionMs: {}\tRetentionBytes: {}",
                topic.name,
                topic.id,
                topic.partitions.len(),
                topic.durability,
                topic.segment_bytes,
                optional(topic.retention_ms),
                optional(topic.retention_bytes),
            )?;
            let shown = |v: Option<u64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
            let nodes = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
            for p in &topic.partitions {
                // A cluster's partitions name their replicas (`kafka-topics --describe` style).
                if !p.replica_nodes.is_empty() {
                    let leader = if p.leader_node < 0 { "none".to_owned() } else { p.leader_node.to_string() };
                    writeln!(
                        out,
                        "\tTopic: {}\tPartition: {}\tLeader: {}\tLeaderEpoch: {}\tReplicas: {}\tIsr: {}\tShard: {}",
                        topic.name,
                        p.partition,
                        leader,
                        p.leader_epoch,
                        nodes(&p.replica_nodes),
                        nodes(&p.isr_nodes),
                        p.shard,
                    )?;
                    continue;
                }
                writeln!(
                    out,
                    "\tTopic: {}\tPartition: {}\tShard: {}\tStartOffset: {}\tEndOffset: {}\tSizeBytes: {}",
                    topic.name,
                    p.partition,
                    p.shard,
                    shown(p.log_start_offset),
                    shown(p.log_end_offset),
                    shown(p.size_bytes),
                )?;
            }
        }
        TopicCommand::AddPartitions { name, partitions, broker } => {
            let client = broker.connect().await?;
            client.add_partitions(&name, partitions).await?;
            writeln!(out, "Topic {name} now has {partitions} partitions.")?;
        }
        TopicCommand::Delete { name, broker } => {
            let client = broker.connect().await?;
            client.delete_topic(&name).await?;
            writeln!(out, "Deleted topic {name}.")?;
        }
        TopicCommand::Config { command: ConfigCommand::Get { name, broker } } => {
            let client = broker.connect().await?;
            for c in client.describe_topic_config(&name).await? {
                let source = if c.is_default { "default" } else { "set" };
                let applied = if c.applied { "" } else { ", not applied by shardlog" };
                writeln!(out, "{}={}	({source}{applied})", c.name, c.value)?;
            }
        }
        TopicCommand::Config { command: ConfigCommand::Set { name, configs, reset, broker } } => {
            let mut set = Vec::with_capacity(configs.len());
            for pair in configs {
                let Some((key, value)) = pair.split_once('=') else {
                    return Err(CliError(format!("{pair:?} is not KEY=VALUE")));
                };
                set.push((key.to_owned(), value.to_owned()));
            }
            if set.is_empty() && reset.is_empty() {
                return Err(CliError("nothing to change: give KEY=VALUE pairs or --reset KEY".into()));
            }
            let client = broker.connect().await?;
            client.alter_topic_config(&name, set, reset).await?;
            writeln!(out, "Updated the configs of topic {name}.")?;
        }
    }
    out.flush()?;
    Ok(())
}
