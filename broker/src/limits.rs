//! The broker's bounds, with units. Engine bounds live in `engine::limits`.

/// Largest request frame (after the 4-byte length) on any listener: the native protocol's
/// limit, also applied to Kafka requests (Kafka's socket.request.max.bytes is 100 MiB).
pub const FRAME_BYTES_MAX: u32 = protocol::frame::FRAME_BYTES_MAX;

/// Requests read from one connection and not yet answered. Beyond this the connection's reader
/// waits, so one client cannot queue unbounded work.
pub const REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX: usize = 64;

/// Produce bytes one shard holds in requests not yet answered. When spent, connections stop
/// reading (TCP backpressure) instead of growing memory.
pub const PRODUCE_MEMORY_BYTES_PER_SHARD_MAX: u64 = 256 << 20;

/// A frame body is read (and charged to the request-memory budget) in pieces of at most this
/// size; pieces start at `FRAME_FIRST_PIECE_BYTES` and grow with the bytes already received.
pub const FRAME_READ_CHUNK_BYTES: u32 = 1 << 20;

/// The first piece of a frame body. A peer that announces a large frame and then stalls pins
/// at most this much budget beyond what it sent: with 256 MiB per shard, it would take 65 536
/// stalled connections per shard (more than the file-descriptor limit) to spend the budget.
pub const FRAME_FIRST_PIECE_BYTES: u32 = 4 << 10;

const _: () = assert!(FRAME_FIRST_PIECE_BYTES <= FRAME_READ_CHUNK_BYTES);

/// A frame whose body does not arrive within this long closes the connection (slowloris).
pub const FRAME_BODY_TIMEOUT_MS: u64 = 30_000;

/// A connection that sends nothing for this long is closed.
pub const IDLE_CONNECTION_TIMEOUT_MS: u64 = 10 * 60 * 1000;

/// Longest long-poll a Fetch may ask for.
pub const FETCH_WAIT_MS_MAX: u32 = 60_000;

/// Largest Fetch response (sum over partitions).
pub const FETCH_RESPONSE_BYTES_MAX: u32 = 64 << 20;

/// Cross-shard channel depth (messages) between each pair of shards.
pub const SHARD_CHANNEL_CAPACITY: usize = 1024;

/// How often each shard applies retention to its partitions.
pub const RETENTION_CHECK_INTERVAL_MS: u64 = 30_000;

/// How often the group coordinator expires members that stopped heartbeating.
pub const GROUP_EXPIRY_CHECK_INTERVAL_MS: u64 = 250;

/// Session timeouts a consumer may ask for (Kafka's defaults: 6 s .. 30 min).
pub const SESSION_TIMEOUT_MS_MIN: u32 = 1_000;
pub const SESSION_TIMEOUT_MS_MAX: u32 = 30 * 60 * 1000;

/// Members per consumer group.
pub const GROUP_MEMBERS_MAX: usize = 10_000;

/// Consumer groups one coordinator runs.
pub const GROUPS_MAX: usize = 100_000;

/// Member ids one group has given out with MEMBER_ID_REQUIRED and not yet seen join (each is
/// forgotten after the session timeout): a client that asks and never comes back costs one
/// entry for that long.
pub const GROUP_PENDING_MEMBERS_MAX: usize = GROUP_MEMBERS_MAX;

/// Kafka's default `group.initial.rebalance.delay.ms`: an empty group waits this long for
/// more members before its first generation (`--group-initial-rebalance-delay-ms`).
pub const GROUP_INITIAL_REBALANCE_DELAY_MS_DEFAULT: u64 = 3_000;

/// Fetch sessions (KIP-227) one shard keeps; past this the least recently used is evicted
/// (its client gets FETCH_SESSION_ID_NOT_FOUND and starts a new one with a full fetch).
pub const FETCH_SESSIONS_PER_SHARD_MAX: usize = 1_000;

/// Partitions one fetch session may hold (each costs ~100 bytes): bounds a session's memory.
pub const FETCH_SESSION_PARTITIONS_MAX: usize = 10_000;

/// A member's protocol metadata (all protocols of one JoinGroup together), and one member's
/// assignment in a SyncGroup. Kafka bounds both through the 1 MiB record that stores group
/// metadata; here they are held in memory, copied out of the request frame so that a small
/// metadata never pins a large frame.
pub const GROUP_MEMBER_METADATA_BYTES_MAX: usize = 1 << 20;

/// The longest a JoinGroup barrier (or a wait for the leader's SyncGroup) may last, whatever
/// rebalance timeout the client asks for.
pub const REBALANCE_TIMEOUT_MS_MAX: u64 = 5 * 60 * 1000;

/// KIP-848 consumer groups: how often a member heartbeats, as the coordinator tells it
/// (Kafka's `group.consumer.heartbeat.interval.ms` default).
pub const CONSUMER_GROUP_HEARTBEAT_INTERVAL_MS: u32 = 5_000;

/// KIP-848 consumer groups: a member silent this long is removed and its partitions go to
/// the others (Kafka's `group.consumer.session.timeout.ms` default).
pub const CONSUMER_GROUP_SESSION_TIMEOUT_MS: u64 = 45_000;

/// Members per KIP-848 consumer group (each member's target is recomputed at every change,
/// so this bounds the coordinator's work per heartbeat too).
pub const CONSUMER_GROUP_MEMBERS_MAX: usize = 1_000;

/// Bytes of a KIP-848 member id (clients send a 22-character UUID; this leaves room).
pub const CONSUMER_MEMBER_ID_BYTES_MAX: usize = 256;

/// Topics one KIP-848 member may subscribe to.
pub const CONSUMER_SUBSCRIBED_TOPICS_MAX: usize = 10_000;

/// Partitions one KIP-848 heartbeat may report owned.
pub const CONSUMER_OWNED_PARTITIONS_MAX: usize = 100_000;

/// Deadline of a cross-shard call (beyond any wait the call itself asks for, such as a
/// long-poll): a shard that does not answer in this long is reported unavailable instead of
/// holding the request forever. Kafka's request.timeout.ms default is the same.
pub const SHARD_CALL_TIMEOUT_MS: u64 = 30_000;

/// Partition logs a shard opens (topic creation, startup) or deletes at once: each is a handful of
/// small file operations and directory fsyncs that wait on the disk, so one at a time made
/// a 10 000-partition topic take 10–40 s here and time out (`SHARD_CALL_TIMEOUT_MS`);
/// concurrent fsyncs share the journal's commits.
pub const PARTITION_FILE_OPS_IN_FLIGHT_MAX: usize = 64;

/// Shards (cores) one broker may run.
pub const SHARDS_MAX: usize = 256;

/// How long graceful shutdown waits for in-flight requests before closing logs anyway.
pub const SHUTDOWN_GRACE_MS: u64 = 10_000;

/// How long binding a listening port retries while the port is in use: after SIGKILL the
/// dead process's sockets stay for 10–70 ms here (io_uring teardown), and a supervisor that
/// restarts at once must still get a broker.
pub const BIND_RETRY_MS_MAX: u64 = 2_000;

/// Pause between those retries.
pub const BIND_RETRY_INTERVAL_MS: u64 = 10;

/// Pending connections a listening socket queues (listen(2) backlog).
pub const LISTEN_BACKLOG: i32 = 1024;

/// How often a shard checks whether the broker was asked to stop (signals arrive on
/// another thread).
pub const STOP_POLL_MS: u64 = 50;

const _: () = assert!(FETCH_RESPONSE_BYTES_MAX >= engine::limits::READ_BYTES_MAX);
const _: () = assert!(BIND_RETRY_INTERVAL_MS < BIND_RETRY_MS_MAX);
const _: () = assert!(GROUP_INITIAL_REBALANCE_DELAY_MS_DEFAULT < REBALANCE_TIMEOUT_MS_MAX);
const _: () = assert!((CONSUMER_GROUP_HEARTBEAT_INTERVAL_MS as u64) < CONSUMER_GROUP_SESSION_TIMEOUT_MS);
const _: () = assert!(CONSUMER_GROUP_MEMBERS_MAX <= GROUP_MEMBERS_MAX);
const _: () = assert!(FRAME_FIRST_PIECE_BYTES <= FRAME_BYTES_MAX);
const _: () = assert!(PRODUCE_MEMORY_BYTES_PER_SHARD_MAX >= 2 * engine::limits::BATCH_SIZE_BYTES_MAX as u64);

// ---- replication (a cluster) ------------------------------------------------------------

/// An in-sync follower that has not caught up with the leader's log end for this long leaves
/// the ISR (Kafka's replica.lag.time.max.ms, 30 s by default; shorter here so that a stalled
/// follower stops holding acks=all back within seconds).
pub const REPLICA_LAG_TIME_MAX_MS: u64 = 10_000;

/// How often a leader checks its followers' lag (and a replica checkpoints its high
/// watermark).
pub const REPLICA_CHECK_INTERVAL_MS: u64 = 1_000;

/// The longest a follower's fetch waits at the leader for new data (long-poll). Also how
/// late a follower may learn a new high watermark when nothing is produced.
pub const REPLICA_FETCH_WAIT_MS: u32 = 500;

/// Bytes one replica fetch asks for (all partitions), and per partition.
pub const REPLICA_FETCH_BYTES_MAX: u32 = 16 << 20;
pub const REPLICA_FETCH_PARTITION_BYTES_MAX: u32 = 4 << 20;

/// A replica fetch gets its answer within the long-poll plus this, or the connection is
/// dropped and the fetch retried.
pub const REPLICA_FETCH_TIMEOUT_MS: u64 = 10_000;

/// A follower that cannot reach its leader retries after this long (doubling up to the max).
pub const REPLICA_RETRY_MS_MIN: u64 = 50;
pub const REPLICA_RETRY_MS_MAX: u64 = 1_000;

/// Connecting to a leader's shard gives up after this long.
pub const REPLICA_CONNECT_TIMEOUT_MS: u64 = 2_000;

/// An acks=all produce waits at most this long for its batches to reach every in-sync
/// replica; then the client gets a timeout (the batch may still be replicated later).
pub const REPLICATION_WAIT_MS_MAX: u64 = 15_000;

/// A metadata proposal (topic changes, ISR changes, offset commits) from this node gives up
/// after this long.
pub const PROPOSE_TIMEOUT_MS: u64 = 15_000;

/// How often the coordinator shard checks which node leads the metadata log (the controller,
/// and group coordinator, that Metadata and FindCoordinator name).
pub const CONTROLLER_POLL_MS: u64 = 100;
