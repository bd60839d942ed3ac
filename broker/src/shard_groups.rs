//! The group operations APIs (issue #13) on the coordinator shard: list, describe and delete
//! groups, delete committed offsets. Groups are the coordinator's (members) and the offset
//! store's (committed offsets): a group whose members all left still exists while it has
//! offsets, in state Empty, as in Kafka.

use std::rc::Rc;

use crate::calls::{Reply, ShardCall};
use crate::cluster::{MetaCommand, MetaResponse};
use crate::error::CallError;
use crate::groups::{DeleteGroupError, GroupDescription, GroupListing, OffsetDeleteError};
use crate::ids::COORDINATOR_SHARD;
use crate::limits::SHARD_CALL_TIMEOUT_MS;
use crate::partition::TopicPartition;
use crate::router::deadline_in;
use crate::shard::{now_ms, CoordinatorState, Shard};

/// The protocol type reported for a group known only by its committed offsets.
const OFFSETS_ONLY_PROTOCOL_TYPE: &str = "consumer";

impl Shard {
    /// The groups with committed offsets: the offset store's on a single node, the metadata's
    /// in a cluster (where committed offsets go through the metadata log).
    fn groups_with_offsets(&self, c: &CoordinatorState) -> Vec<String> {
        match &self.topics().cluster {
            Some(view) => view.metadata.offsets.keys().cloned().collect(),
            None => c.offsets.groups(),
        }
    }

    /// Deletes `group`'s committed offsets (of `partitions`, or all): from the offset store, or
    /// in a cluster through the metadata log.
    async fn delete_committed(
        self: &Rc<Self>,
        c: &CoordinatorState,
        group: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<(), DeleteGroupError> {
        if self.topics().cluster.is_some() {
            let partitions = partitions.map(|list| list.iter().map(|tp| (tp.topic.clone(), tp.partition)).collect());
            let command = MetaCommand::DeleteOffsets { group: group.to_owned(), partitions };
            return match self.propose(command).await {
                Ok(MetaResponse::Ok) => Ok(()),
                Ok(other) => {
                    tracing::error!(%group, answer = ?other, "deleting committed offsets was refused");
                    Err(DeleteGroupError::Storage)
                }
                Err(e) => {
                    tracing::warn!(%group, error = %e, "deleting committed offsets failed");
                    Err(DeleteGroupError::Storage)
                }
            };
        }
        let deleted = match partitions {
            None => c.offsets.delete_group(group, now_ms()).await.map(|count| {
                tracing::info!(%group, offsets = count, "group deleted");
            }),
            Some(partitions) => c.offsets.delete_offsets(group, partitions, now_ms()).await,
        };
        deleted.map_err(|e| {
            tracing::error!(%group, error = %e, "deleting committed offsets failed");
            DeleteGroupError::Storage
        })
    }

    /// Runs `local` on the coordinator state if this is the coordinator shard, else sends the
    /// call `remote` builds.
    async fn on_group_coordinator<T>(
        self: &Rc<Self>,
        local: impl AsyncFnOnce(&CoordinatorState) -> T,
        remote: impl FnOnce(Reply<T>) -> ShardCall,
    ) -> Result<T, CallError> {
        match self.coordinator() {
            Some(coordinator) => Ok(local(coordinator).await),
            None => self.router().call(COORDINATOR_SHARD, remote, deadline_in(SHARD_CALL_TIMEOUT_MS)).await,
        }
    }

    /// Every group with members or committed offsets, sorted by name.
    pub async fn list_groups(self: &Rc<Self>) -> Result<Vec<GroupListing>, CallError> {
        let local = async |c: &CoordinatorState| {
            let mut listed = c.groups.list();
            for group in self.groups_with_offsets(c) {
                if !listed.iter().any(|l| l.group == group) {
                    listed.push(GroupListing {
                        group,
                        group_type: crate::groups::GROUP_TYPE_CLASSIC,
                        protocol_type: OFFSETS_ONLY_PROTOCOL_TYPE.to_owned(),
                        state: "Empty",
                    });
                }
            }
            listed.sort_by(|a, b| a.group.cmp(&b.group));
            listed
        };
        let remote = |reply| ShardCall::ListGroups { reply };
        self.on_group_coordinator(local, remote).await
    }

    /// A group's state and members; "Empty" for one known only by its offsets, "Dead" for an
    /// unknown one (Kafka answers both without an error).
    pub async fn describe_group(self: &Rc<Self>, group: String) -> Result<GroupDescription, CallError> {
        let local = async |c: &CoordinatorState| {
            c.groups.describe(&group).unwrap_or_else(|| {
                let has_offsets = self.groups_with_offsets(c).contains(&group);
                GroupDescription {
                    group: group.clone(),
                    state: if has_offsets { "Empty" } else { "Dead" },
                    protocol_type: if has_offsets { OFFSETS_ONLY_PROTOCOL_TYPE.to_owned() } else { String::new() },
                    protocol: String::new(),
                    generation: 0,
                    members: Vec::new(),
                }
            })
        };
        let remote = |reply| ShardCall::DescribeGroup { group: group.clone(), reply };
        self.on_group_coordinator(local, remote).await
    }

    /// Deletes an empty group and its committed offsets.
    pub async fn delete_group(self: &Rc<Self>, group: String) -> Result<(), DeleteGroupError> {
        let local = async |c: &CoordinatorState| {
            if group.is_empty() || group.len() > engine::limits::GROUP_NAME_BYTES_MAX {
                return Err(DeleteGroupError::InvalidGroupId);
            }
            let known = c.groups.describe(&group).is_some() || self.groups_with_offsets(c).contains(&group);
            if !known {
                return Err(DeleteGroupError::NotFound);
            }
            if !c.groups.forget(&group) {
                return Err(DeleteGroupError::NotEmpty);
            }
            self.delete_committed(c, &group, None).await
        };
        let remote = |reply| ShardCall::DeleteGroup { group: group.clone(), reply };
        self.on_group_coordinator(local, remote)
            .await
            .unwrap_or_else(|e| Err(DeleteGroupError::CoordinatorUnavailable(e)))
    }

    /// Deletes `group`'s committed offsets of `partitions` (Kafka's OffsetDelete): refused
    /// per partition while the group's members subscribe to its topic.
    pub async fn delete_offsets(
        self: &Rc<Self>,
        group: String,
        partitions: Vec<TopicPartition>,
    ) -> Result<Vec<Result<(), OffsetDeleteError>>, DeleteGroupError> {
        let table = self.topics();
        let local = async |c: &CoordinatorState| {
            let has_offsets = self.groups_with_offsets(c).contains(&group);
            let subscribed = c.groups.subscribed_topics(&group);
            if !has_offsets && subscribed.is_none() {
                return Err(DeleteGroupError::NotFound);
            }
            let subscribed = subscribed.unwrap_or_default();
            let results: Vec<Result<(), OffsetDeleteError>> = partitions
                .iter()
                .map(|tp| {
                    if table.owner(&tp.topic, tp.partition).is_none() {
                        Err(OffsetDeleteError::UnknownTopicOrPartition)
                    } else if subscribed.contains(&tp.topic) {
                        Err(OffsetDeleteError::SubscribedToTopic)
                    } else {
                        Ok(())
                    }
                })
                .collect();
            let doomed: Vec<TopicPartition> =
                partitions.iter().zip(&results).filter(|(_, r)| r.is_ok()).map(|(tp, _)| tp.clone()).collect();
            self.delete_committed(c, &group, Some(&doomed)).await?;
            Ok(results)
        };
        let remote = |reply| ShardCall::DeleteOffsets { group: group.clone(), partitions: partitions.clone(), reply };
        self.on_group_coordinator(local, remote)
            .await
            .unwrap_or_else(|e| Err(DeleteGroupError::CoordinatorUnavailable(e)))
    }
}
