//! `shardlog cluster …`: moving partitions in a cluster — reassign a partition onto other
//! nodes (or cancel), list the moves under way, move leaders back to their preferred replica,
//! and drain a node before it is removed. The same metadata proposals as Kafka's
//! AlterPartitionReassignments, ListPartitionReassignments and ElectLeaders.

use std::io::Write;

use clap::Subcommand;
use client::ReassignmentEntry;

use super::{BrokerArgs, CliError};

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Move a partition onto the replicas on --replicas (node ids; the first is the preferred
    /// leader), or --cancel the move under way. The new replicas catch up, join the ISR, then
    /// the removed ones are deleted; `cluster reassignments` shows progress.
    Reassign {
        topic: String,
        partition: u32,
        /// Comma-separated node ids, e.g. 2,3,4.
        #[arg(long, value_delimiter = ',', required_unless_present = "cancel", conflicts_with = "cancel")]
        replicas: Vec<u32>,
        #[arg(long)]
        cancel: bool,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// List the partition moves under way.
    Reassignments {
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Move leadership back to the preferred (first) replica: of one partition, or of every
    /// partition of the topic whose leader is not its preferred one.
    ElectLeader {
        topic: String,
        #[arg(long)]
        partition: Option<u32>,
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Drain a node before removing it: no new replicas go there and every replica it holds
    /// moves to other nodes. --undo clears the mark (replicas already moved stay where they are).
    Drain {
        node: u32,
        #[arg(long)]
        undo: bool,
        #[command(flatten)]
        broker: BrokerArgs,
    },
}

fn print_moves(out: &mut impl Write, moves: &[ReassignmentEntry]) -> Result<(), CliError> {
    let nodes = |list: &[u32]| list.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    for m in moves {
        writeln!(
            out,
            "Topic: {}\tPartition: {}\tReplicas: {}\tAdding: {}\tRemoving: {}",
            m.topic,
            m.partition,
            nodes(&m.replicas),
            nodes(&m.adding),
            nodes(&m.removing)
        )?;
    }
    Ok(())
}

pub async fn run(command: ClusterCommand) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match command {
        ClusterCommand::Reassign { topic, partition, replicas, cancel, broker } => {
            let client = broker.connect().await?;
            let target = (!cancel).then_some(replicas);
            client.reassign(&topic, partition, target).await?;
            let verb = if cancel { "cancelled the move of" } else { "moving" };
            writeln!(out, "{verb} {topic}-{partition}")?;
        }
        ClusterCommand::Reassignments { broker } => {
            let client = broker.connect().await?;
            print_moves(&mut out, &client.reassignments().await?)?;
        }
        ClusterCommand::ElectLeader { topic, partition, broker } => {
            let client = broker.connect().await?;
            let partitions: Vec<u32> = match partition {
                Some(p) => vec![p],
                None => {
                    let metadata = client.metadata(Some(vec![topic.clone()]), false).await?;
                    let Some(t) = metadata.topics.into_iter().find(|t| t.name == topic) else {
                        return Err(CliError(format!("unknown topic {topic:?}")));
                    };
                    // Only those whose leader is not the preferred replica.
                    t.partitions
                        .iter()
                        .filter(|p| {
                            p.replica_nodes
                                .first()
                                .is_some_and(|&preferred| i64::from(preferred) != i64::from(p.leader_node))
                        })
                        .map(|p| p.partition)
                        .collect()
                }
            };
            for p in partitions {
                client.elect_preferred_leader(&topic, p).await?;
                writeln!(out, "{topic}-{p}: leader moved to its preferred replica")?;
            }
        }
        ClusterCommand::Drain { node, undo, broker } => {
            let client = broker.connect().await?;
            let moves = client.drain(node, !undo).await?;
            if undo {
                writeln!(out, "node {node} is no longer draining")?;
            } else {
                writeln!(out, "draining node {node}: {} partition moves started", moves.len())?;
                print_moves(&mut out, &moves)?;
            }
        }
    }
    Ok(())
}
