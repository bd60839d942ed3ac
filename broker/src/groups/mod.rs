//! Consumer groups: one coordinator (`coordinator.rs`, Kafka's classic group protocol) for
//! both protocols, KIP-848 consumer groups beside it (`consumer_group.rs`), the broker-side assignors native consumers use (`assignor.rs`), and the
//! committed-offset store (`offsets.rs`). All of it lives on the coordinator shard; other
//! shards reach it through `Shard` (typed cross-shard calls).
//!
//! The types here are the protocol-neutral requests and answers; each adapter maps its wire
//! messages onto them.

pub mod assignor;
pub mod consumer_group;
pub mod consumer_protocol;
pub mod coordinator;
pub mod offsets;

use bytes::Bytes;
use futures_channel::oneshot;

pub use consumer_group::{
    ConsumerGroupDescription, ConsumerHeartbeat, ConsumerHeartbeatReply, ConsumerMemberDescription, ServerAssignor,
};
pub use consumer_protocol::{assignment_partitions, subscription_topics};
pub use coordinator::GroupCoordinator;
pub use offsets::{CommitError, OffsetStore, OffsetToCommit};

use crate::error::CallError;

/// Why a group call failed (Kafka's group error codes, protocol-neutral).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    #[error("unknown member id; join the group again")]
    UnknownMemberId,
    #[error("the group's generation changed; join again")]
    IllegalGeneration,
    #[error("the group is rebalancing; join again")]
    RebalanceInProgress,
    #[error("protocol type or protocols differ from the group's")]
    InconsistentGroupProtocol,
    #[error("invalid group id")]
    InvalidGroupId,
    #[error("session timeout out of range")]
    InvalidSessionTimeout,
    #[error("member metadata or assignment too large")]
    MetadataTooLarge,
    #[error("too many groups on this coordinator")]
    TooManyGroups,
    #[error("the group has the most members allowed")]
    GroupFull,
    #[error("group coordinator unavailable: {0}")]
    CoordinatorUnavailable(CallError),
    /// JoinGroup v4+: a new member must join again with the member id it was given (Kafka's
    /// MEMBER_ID_REQUIRED round trip), so a client that never comes back holds no member.
    #[error("rejoin with the member id given")]
    MemberIdRequired,
    /// A static member's instance id is now held by a newer member id (Kafka's
    /// FENCED_INSTANCE_ID).
    #[error("this group instance id is held by another member")]
    FencedInstanceId,
    /// A cluster: groups are served by the controller node, not this one.
    #[error("this node does not coordinate groups; ask for the coordinator again")]
    NotCoordinator,
    /// KIP-848: a heartbeat's member epoch is ahead of the member's, or behind it in a way
    /// a lost answer does not explain; the member must rejoin with epoch 0.
    #[error("the member epoch is not the member's current one; rejoin with epoch 0")]
    FencedMemberEpoch,
    /// KIP-848: an offset commit or fetch carried a member epoch other than the member's.
    #[error("the member epoch is stale")]
    StaleMemberEpoch,
    /// KIP-848: the ServerAssignor named is not one the coordinator runs.
    #[error("unsupported server assignor (uniform and range are)")]
    UnsupportedAssignor,
    /// A malformed request (Kafka's INVALID_REQUEST), with why.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// The group exists with the other protocol (classic vs consumer), or not at all.
    #[error("no such group of this type")]
    GroupIdNotFound,
    /// KIP-848: a static member joined with an instance id another active member holds.
    #[error("the instance id is held by another active member")]
    UnreleasedInstanceId,
}

/// A JoinGroup (a member id of "" joins as a new member).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinRequest {
    pub group: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// "consumer" for Kafka consumers; all members of a group share it.
    pub protocol_type: String,
    /// (protocol name, member metadata), in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub session_timeout_ms: u32,
    /// `None`: the session timeout (Kafka's JoinGroup v0).
    pub rebalance_timeout_ms: Option<u32>,
    /// The client's id and address, as DescribeGroups reports them ("" when unknown).
    pub client_id: String,
    pub client_host: String,
    /// The id a new member gets (Kafka: `<client.id>-<uuid>`); `None`: the coordinator's own.
    pub new_member_id: Option<String>,
    /// A new member without an instance id first gets `MemberIdRequired` and `new_member_id`
    /// (Kafka's JoinGroup v4+).
    pub require_known_member_id: bool,
}

/// A completed join: the new generation, and for the leader every member's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: String,
    pub leader: String,
    pub member_id: String,
    /// (member id, metadata for the chosen protocol); empty unless this member leads.
    pub members: Vec<(String, Bytes)>,
}

/// A completed join to a broker-assigned (native) group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignedJoin {
    pub generation: i32,
    pub member_id: String,
    /// This member's partitions (`assignor::encode_assignment`).
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    pub group: String,
    pub member_id: String,
    pub generation: i32,
    /// The leader's assignment, (member id, assignment); empty from followers.
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// This member's assignment, as the leader encoded it.
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatRequest {
    pub group: String,
    pub member_id: String,
    pub generation: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveRequest {
    pub group: String,
    pub members: Vec<String>,
}

/// One member's outcome in a LeaveGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberLeft {
    pub member_id: String,
    pub result: Result<(), GroupError>,
}

/// An answer now, or one that comes when the rebalance gets there.
pub enum Waiting<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

impl<T> Waiting<T> {
    /// The answer, waiting for it if needed; `gone` if the coordinator dropped the waiter.
    pub async fn answer(self, gone: T) -> T {
        match self {
            Waiting::Now(t) => t,
            Waiting::Later(rx) => rx.await.unwrap_or(gone),
        }
    }
}

/// Kafka's group types (ListGroups v5).
pub const GROUP_TYPE_CLASSIC: &str = "classic";
pub const GROUP_TYPE_CONSUMER: &str = "consumer";

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group: String,
    /// Kafka's group type: "classic" (JoinGroup/SyncGroup) or "consumer" (KIP-848).
    pub group_type: &'static str,
    /// "consumer" for Kafka consumers, `assignor::NATIVE_PROTOCOL_TYPE` for native ones.
    pub protocol_type: String,
    /// Kafka's state names: Empty, PreparingRebalance, CompletingRebalance, Stable.
    pub state: &'static str,
}

/// One member as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// The member's metadata for the group's protocol.
    pub metadata: Bytes,
    /// Its assignment as the leader (or the broker) encoded it.
    pub assignment: Bytes,
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group: String,
    /// Kafka's state names, and "Dead" for a group the coordinator does not know.
    pub state: &'static str,
    pub protocol_type: String,
    /// The chosen protocol (assignor); "" while none is.
    pub protocol: String,
    pub generation: i32,
    pub members: Vec<MemberDescription>,
}

/// Why a group could not be deleted (Kafka's DeleteGroups codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeleteGroupError {
    #[error("the group has members")]
    NotEmpty,
    #[error("no such group")]
    NotFound,
    #[error("invalid group id")]
    InvalidGroupId,
    #[error("the committed offsets could not be deleted")]
    Storage,
    #[error("group coordinator unavailable: {0}")]
    CoordinatorUnavailable(CallError),
}

/// Why one partition's committed offset could not be deleted (Kafka's OffsetDelete).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OffsetDeleteError {
    #[error("the group's members subscribe to the topic")]
    SubscribedToTopic,
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
}
