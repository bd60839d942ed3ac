//! Every bound and default of the cluster crate, as a named constant with its unit, and the
//! compile-time checks that tie them together. The timing defaults are chosen for small
//! machines shared by several brokers (3–5 processes on 2 vCPUs in our tests): a Raft node
//! that misses its leader's heartbeats for one election timeout starts an election, so timeouts
//! that are short against scheduling delays cause spurious elections.

// ---- Broker liveness (the controller) ----

/// How often every broker tells the controller it is alive (Kafka's
/// `broker.heartbeat.interval.ms` is 2000; ours is shorter so that a dead broker is fenced in
/// seconds, and a heartbeat is one small RPC).
pub const BROKER_HEARTBEAT_INTERVAL_MS_DEFAULT: u64 = 500;

/// A registered broker silent this long is fenced (Kafka's `broker.session.timeout.ms` is
/// 9000). Six heartbeats: one or two lost or late heartbeats never fence a live broker.
pub const BROKER_SESSION_TIMEOUT_MS_DEFAULT: u64 = 3000;

/// The controller wakes this often to look for silent brokers: a broker is fenced at most
/// this late after its session ran out.
pub const CONTROLLER_TICK_MS: u64 = 100;

/// How often the controller looks for partitions whose preferred replica could lead again
/// (Kafka's `leader.imbalance.check.interval.seconds` is 300; the metadata log is cheap and
/// our tests want to see it happen).
pub const LEADER_BALANCE_INTERVAL_MS: u64 = 3000;

/// Preferred-leader elections proposed per balancing round, so that a node coming back does
/// not take all its leaderships (and their clients) at once.
pub const LEADER_BALANCE_BATCH_MAX: usize = 8;

// ---- Raft timing ----

/// The Raft leader's heartbeat (an empty AppendEntries) to each follower. openraft also uses it
/// as the timeout of every AppendEntries, so it must cover one RPC on a busy machine.
pub const RAFT_HEARTBEAT_INTERVAL_MS_DEFAULT: u64 = 250;

/// A follower that hears nothing from a leader for a random time in [min, max) starts an
/// election. Four to eight heartbeats: scheduling hiccups of several hundred milliseconds on a
/// shared machine do not depose a live leader.
pub const RAFT_ELECTION_TIMEOUT_MIN_MS_DEFAULT: u64 = 1000;
pub const RAFT_ELECTION_TIMEOUT_MAX_MS_DEFAULT: u64 = 2000;

/// Each chunk of a snapshot sent to a lagging node must be answered within this.
pub const RAFT_INSTALL_SNAPSHOT_TIMEOUT_MS: u64 = 5000;

/// A follower whose connection attempts are refused is retried this often (openraft's backoff
/// after an `Unreachable` error).
pub const RAFT_UNREACHABLE_BACKOFF_MS: u64 = 500;

/// Entries per AppendEntries. A frame that would pass `RPC_FRAME_BYTES_MAX` is split further
/// (the network answers `PayloadTooLarge` and openraft halves its batch).
pub const RAFT_PAYLOAD_ENTRIES_MAX: u64 = 64;

// ---- Snapshots and the log ----

/// Build a snapshot every this many applied entries, then purge the log behind it: the log
/// file stays small and a restart replays at most this many entries.
pub const SNAPSHOT_LOGS_SINCE_LAST_DEFAULT: u64 = 1000;

/// Entries kept in the log behind the latest snapshot, so that a follower a little behind
/// catches up from the log instead of receiving a whole snapshot.
pub const SNAPSHOT_LOGS_KEPT_DEFAULT: u64 = 100;

/// Bytes of snapshot per InstallSnapshot RPC. The chunk travels as a JSON array of numbers
/// (up to 4 bytes of text per byte), see the assert below.
pub const SNAPSHOT_CHUNK_BYTES: u64 = 1 << 20;

/// Largest snapshot file read back at start: the metadata of a large cluster is a few MiB;
/// anything near this is a corrupt or foreign file, not metadata.
pub const SNAPSHOT_FILE_BYTES_MAX: u64 = 1 << 30;

/// Largest command one proposal may carry, as JSON. A CreateTopic of 10 000 partitions of 3
/// replicas is ~400 KiB.
pub const COMMAND_BYTES_MAX: usize = 1 << 20;

/// Largest record of the log file (an entry: its command plus log id and framing).
pub const LOG_RECORD_BYTES_MAX: u32 = COMMAND_BYTES_MAX as u32 + (64 << 10);

/// Largest log file read back at start (it is read whole). The log is purged behind each
/// snapshot, so it holds about `SNAPSHOT_LOGS_SINCE_LAST_DEFAULT + SNAPSHOT_LOGS_KEPT_DEFAULT`
/// entries (see the assert below); this bounds the memory a corrupt or foreign file can make
/// us allocate.
pub const LOG_FILE_BYTES_MAX: u64 = 2 << 30;

// ---- RPC ----

/// Largest frame (request or response) on a cluster connection. A peer announcing more is
/// answered with an error and disconnected.
pub const RPC_FRAME_BYTES_MAX: u32 = 32 << 20;

/// Connection attempts to a peer give up after this (a peer on the same network answers in
/// well under a millisecond; a dead host does not answer at all).
pub const RPC_CONNECT_TIMEOUT_MS: u64 = 1000;

/// A request other than Raft's own (which carry openraft's timeouts) must be answered within
/// this.
pub const RPC_REQUEST_TIMEOUT_MS: u64 = 5000;

/// Connections open to one peer at once (one request in flight on each). Raft replication,
/// votes, forwarded proposals and heartbeats rarely need more than two.
pub const RPC_PEER_CONNECTIONS_MAX: usize = 4;

/// A pooled connection idle longer than this is closed rather than reused: it stays well below
/// the server's idle timeout, so the client never reuses a connection the server is closing.
pub const RPC_POOLED_IDLE_MS_MAX: u64 = 20_000;

/// The server closes a connection that sends no request for this long.
pub const RPC_SERVER_IDLE_TIMEOUT_MS: u64 = 60_000;

/// Connections one node's cluster server serves at once; more are closed at accept. Each peer
/// opens at most `RPC_PEER_CONNECTIONS_MAX`.
pub const RPC_SERVER_CONNECTIONS_MAX: usize = 256;

// ---- Proposals and background work ----

/// A proposal is retried across leader changes for this long before it fails.
pub const PROPOSE_DEADLINE_MS: u64 = 10_000;

/// Backoff between proposal attempts (no leader yet, or the leader changed): doubles from min
/// to max.
pub const PROPOSE_BACKOFF_MS_MIN: u64 = 20;
pub const PROPOSE_BACKOFF_MS_MAX: u64 = 500;

/// Registration of this broker and joining as a learner are retried this often until they
/// succeed.
pub const BACKGROUND_RETRY_MS: u64 = 500;

// ---- Compile-time relations ----

const _: () = assert!(BROKER_SESSION_TIMEOUT_MS_DEFAULT >= 3 * BROKER_HEARTBEAT_INTERVAL_MS_DEFAULT);
const _: () = assert!(CONTROLLER_TICK_MS < BROKER_HEARTBEAT_INTERVAL_MS_DEFAULT);
const _: () = assert!(RAFT_ELECTION_TIMEOUT_MIN_MS_DEFAULT < RAFT_ELECTION_TIMEOUT_MAX_MS_DEFAULT);
const _: () = assert!(RAFT_ELECTION_TIMEOUT_MIN_MS_DEFAULT >= 3 * RAFT_HEARTBEAT_INTERVAL_MS_DEFAULT);
// One entry always fits a frame, and so does one snapshot chunk as JSON numbers.
const _: () = assert!(LOG_RECORD_BYTES_MAX < RPC_FRAME_BYTES_MAX / 2);
const _: () = assert!(4 * SNAPSHOT_CHUNK_BYTES + (1 << 20) < RPC_FRAME_BYTES_MAX as u64);
const _: () = assert!(
    (SNAPSHOT_LOGS_SINCE_LAST_DEFAULT + SNAPSHOT_LOGS_KEPT_DEFAULT) * LOG_RECORD_BYTES_MAX as u64 <= LOG_FILE_BYTES_MAX
);
const _: () = assert!(RPC_POOLED_IDLE_MS_MAX < RPC_SERVER_IDLE_TIMEOUT_MS);
const _: () = assert!(RPC_CONNECT_TIMEOUT_MS < RPC_REQUEST_TIMEOUT_MS);
const _: () = assert!(RPC_REQUEST_TIMEOUT_MS < PROPOSE_DEADLINE_MS);
const _: () = assert!(PROPOSE_BACKOFF_MS_MIN < PROPOSE_BACKOFF_MS_MAX);
