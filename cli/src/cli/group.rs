//! `shardlog group …`: consumer groups of either protocol, as `kafka-consumer-groups` shows
//! them — list, describe (each partition's committed offset, log end and lag, and the member
//! that has it), delete.

use std::collections::BTreeMap;
use std::io::Write;

use clap::Subcommand;
use client::{ErrorCode, ListOffsetsPartition, OffsetSpec};

use super::{BrokerArgs, CliError};

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// List groups with members or committed offsets.
    List {
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Show a group's state, and per partition its committed offset, log end, lag and owner.
    Describe {
        group: String,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Delete a group that has no members, with its committed offsets.
    Delete {
        group: String,
        #[command(flatten)]
        broker: BrokerArgs,
    },
}

/// One row of `group describe`.
struct Row {
    topic: String,
    partition: u32,
    committed: Option<i64>,
    log_end: Option<i64>,
    member: Option<(String, String, String)>,
}

pub async fn run(command: GroupCommand) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match command {
        GroupCommand::List { broker } => {
            let client = broker.connect().await?;
            for g in client.list_groups().await? {
                writeln!(out, "{}", g.group)?;
            }
        }
        GroupCommand::Describe { group, broker } => {
            let client = broker.connect().await?;
            let description = client.describe_group(&group).await?;
            if description.state == "Dead" {
                return Err(CliError(format!("consumer group {group:?} does not exist")));
            }
            let mut rows: BTreeMap<(String, u32), Row> = BTreeMap::new();
            fn row<'a>(rows: &'a mut BTreeMap<(String, u32), Row>, topic: &str, partition: u32) -> &'a mut Row {
                rows.entry((topic.to_owned(), partition)).or_insert_with(|| Row {
                    topic: topic.to_owned(),
                    partition,
                    committed: None,
                    log_end: None,
                    member: None,
                })
            }
            for m in &description.members {
                for tp in &m.assignment {
                    row(&mut rows, &tp.topic, tp.partition).member =
                        Some((m.member_id.clone(), m.client_host.clone(), m.client_id.clone()));
                }
            }
            for committed in client.fetch_offsets(&group, None).await? {
                if committed.error.is_ok() && committed.offset >= 0 {
                    row(&mut rows, &committed.topic, committed.partition).committed = Some(committed.offset);
                }
            }
            let wanted: Vec<ListOffsetsPartition> = rows
                .keys()
                .map(|(topic, partition)| ListOffsetsPartition {
                    topic: topic.clone(),
                    partition: *partition,
                    spec: OffsetSpec::Latest,
                })
                .collect();
            if !wanted.is_empty() {
                for listed in client.list_offsets(wanted).await? {
                    if listed.error == ErrorCode::None {
                        if let Some(r) = rows.get_mut(&(listed.topic.clone(), listed.partition)) {
                            r.log_end = Some(listed.offset);
                        }
                    }
                }
            }
            if description.members.is_empty() {
                writeln!(out, "Consumer group '{group}' has no active members.")?;
            }
            writeln!(out, "Group: {group}\tState: {}\tMembers: {}", description.state, description.members.len())?;
            let dash = || "-".to_owned();
            let table: Vec<[String; 9]> = std::iter::once(
                [
                    "GROUP",
                    "TOPIC",
                    "PARTITION",
                    "CURRENT-OFFSET",
                    "LOG-END-OFFSET",
                    "LAG",
                    "CONSUMER-ID",
                    "HOST",
                    "CLIENT-ID",
                ]
                .map(str::to_owned),
            )
            .chain(rows.values().map(|r| {
                let lag = match (r.committed, r.log_end) {
                    (Some(c), Some(e)) => (e - c).max(0).to_string(),
                    _ => dash(),
                };
                let (member, host, client_id) = r.member.clone().unwrap_or_else(|| (dash(), dash(), dash()));
                [
                    group.clone(),
                    r.topic.clone(),
                    r.partition.to_string(),
                    r.committed.map_or_else(dash, |c| c.to_string()),
                    r.log_end.map_or_else(dash, |e| e.to_string()),
                    lag,
                    member,
                    if host.is_empty() { dash() } else { host },
                    if client_id.is_empty() { dash() } else { client_id },
                ]
            }))
            .collect();
            let widths: Vec<usize> = (0..9).map(|i| table.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
            for r in &table {
                let cells: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
                writeln!(out, "{}", cells.join(" ").trim_end())?;
            }
        }
        GroupCommand::Delete { group, broker } => {
            let client = broker.connect().await?;
            client.delete_group(&group).await?;
            writeln!(out, "Deleted consumer group '{group}'.")?;
        }
    }
    out.flush()?;
    Ok(())
}
