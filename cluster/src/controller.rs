//! The controller's decisions — which brokers to fence, which partitions to hand back to their
//! preferred leader — made on whichever node leads the metadata log (Kafka's active
//! controller). The node (`node.rs`) feeds it heartbeats and a tick with the current time,
//! leadership and metadata, and proposes what it returns; keeping time and proposals outside
//! makes every decision testable with a fake clock.
//!
//! Liveness: every broker heartbeats the leader every `heartbeat_interval`. A registered,
//! unfenced broker not heard from for `session_timeout` is fenced. Heartbeats are not
//! replicated, so a node that just became leader knows nobody's: it gives every broker a full
//! session of grace from the moment it took over before fencing anyone.
//!
//! Balancing: every `LEADER_BALANCE_INTERVAL_MS`, up to `LEADER_BALANCE_BATCH_MAX` partitions
//! whose preferred (first) replica is live and in sync but not leading get an `ElectLeader`
//! (Kafka's auto.leader.rebalance), one round at a time. In every round, reassignments whose
//! new replicas are all in sync get their `CompleteReassignment`.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use broker::cluster::{ClusterMetadata, MetaCommand};

use crate::limits::{LEADER_BALANCE_BATCH_MAX, LEADER_BALANCE_INTERVAL_MS};

/// What the controller wants proposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `FenceBroker` for this silent broker; report back with `fence_done`.
    Fence(u32),
    /// These `ElectLeader`s and `CompleteReassignment`s, in order; report back with
    /// `balance_done`.
    Balance(Vec<MetaCommand>),
}

struct State {
    /// The Raft term this node leads in, while it is the controller.
    term: Option<u64>,
    /// When this node took over as controller: no broker's session started earlier.
    since: Instant,
    /// The last heartbeat of each broker (this term).
    last_seen: HashMap<u32, Instant>,
    /// Brokers whose `FenceBroker` is being proposed.
    fencing: BTreeSet<u32>,
    next_balance: Instant,
    /// A balancing round is being proposed.
    balancing: bool,
}

pub struct Controller {
    session_timeout: Duration,
    balance_interval: Duration,
    state: RefCell<State>,
}

impl Controller {
    pub fn new(session_timeout: Duration, now: Instant) -> Controller {
        let state = State {
            term: None,
            since: now,
            last_seen: HashMap::new(),
            fencing: BTreeSet::new(),
            next_balance: now,
            balancing: false,
        };
        Controller {
            session_timeout,
            balance_interval: Duration::from_millis(LEADER_BALANCE_INTERVAL_MS),
            state: RefCell::new(state),
        }
    }

    /// Records a heartbeat of `node` in `incarnation` (on the leader) and says whether the
    /// metadata knows it as registered and unfenced in that incarnation; if not, the broker
    /// registers (again).
    pub fn on_heartbeat(&self, now: Instant, node: u32, incarnation: u64, metadata: &ClusterMetadata) -> bool {
        self.state.borrow_mut().last_seen.insert(node, now);
        metadata.brokers.get(&node).is_some_and(|b| !b.fenced && b.incarnation == incarnation)
    }

    /// One tick: `leader_term` is the term this node leads in (`None` when it does not lead).
    pub fn tick(&self, now: Instant, leader_term: Option<u64>, metadata: &ClusterMetadata) -> Vec<Action> {
        let mut state = self.state.borrow_mut();
        let Some(term) = leader_term else {
            if state.term.take().is_some() {
                tracing::info!("no longer the controller");
            }
            return Vec::new();
        };
        if state.term != Some(term) {
            tracing::info!(term, grace_ms = self.session_timeout.as_millis() as u64, "became the controller");
            state.term = Some(term);
            state.since = now;
            state.last_seen.clear();
            state.next_balance = now + self.balance_interval;
        }
        let mut actions = Vec::new();
        for broker in metadata.brokers.values().filter(|b| !b.fenced) {
            let seen = state.last_seen.get(&broker.node).map_or(state.since, |t| (*t).max(state.since));
            let silent = now.saturating_duration_since(seen);
            if silent >= self.session_timeout && state.fencing.insert(broker.node) {
                tracing::warn!(node = broker.node, silent_ms = silent.as_millis() as u64, "fencing a silent broker");
                actions.push(Action::Fence(broker.node));
            }
        }
        if !state.balancing {
            // Reassignments whose new replicas are all in sync complete at once.
            let mut commands: Vec<MetaCommand> = metadata
                .completable_reassignments()
                .into_iter()
                .map(|(topic, partition, partition_epoch)| MetaCommand::CompleteReassignment {
                    topic,
                    partition,
                    partition_epoch,
                })
                .collect();
            if now >= state.next_balance {
                state.next_balance = now + self.balance_interval;
                let elections = metadata.unbalanced_leaders().into_iter().take(LEADER_BALANCE_BATCH_MAX).map(
                    |(topic, partition, partition_epoch, leader)| MetaCommand::ElectLeader {
                        topic,
                        partition,
                        partition_epoch,
                        leader,
                    },
                );
                let before = commands.len();
                commands.extend(elections);
                if commands.len() > before {
                    tracing::info!(
                        partitions = commands.len() - before,
                        "moving leaderships back to preferred replicas"
                    );
                }
            }
            if !commands.is_empty() {
                state.balancing = true;
                actions.push(Action::Balance(commands));
            }
        }
        actions
    }

    /// The `FenceBroker` of `node` was applied or failed (a failed one is retried next tick).
    pub fn fence_done(&self, node: u32) {
        self.state.borrow_mut().fencing.remove(&node);
    }

    /// The balancing round ended.
    pub fn balance_done(&self) {
        self.state.borrow_mut().balancing = false;
    }
}

#[cfg(test)]
mod tests {
    use broker::cluster::metadata::place;
    use broker::cluster::{BrokerInfo, MetaResponse, ReplicationConfig};

    use super::*;

    fn broker(node: u32) -> BrokerInfo {
        BrokerInfo {
            node,
            incarnation: 1,
            cluster_address: format!("n{node}:1"),
            native_addresses: vec![format!("n{node}:2")],
            kafka_addresses: Vec::new(),
            fenced: false,
            draining: false,
        }
    }

    fn metadata() -> ClusterMetadata {
        let mut m = ClusterMetadata::default();
        for node in 1..=3 {
            m.apply(&MetaCommand::RegisterBroker(broker(node)));
        }
        m
    }

    const SESSION: Duration = Duration::from_secs(3);

    #[test]
    fn a_silent_broker_is_fenced_after_a_full_session_from_takeover() {
        let t0 = Instant::now();
        let c = Controller::new(SESSION, t0);
        let mut m = metadata();
        // Not leading: nothing.
        assert!(c.tick(t0 + SESSION * 10, None, &m).is_empty());
        // Takes over at t1: everybody gets a full session of grace.
        let t1 = t0 + SESSION * 10;
        assert!(c.tick(t1, Some(2), &m).is_empty());
        let beat = |t: Instant, m: &ClusterMetadata| {
            assert!(c.on_heartbeat(t, 1, 1, m));
            assert!(c.on_heartbeat(t, 2, 1, m));
        };
        beat(t1 + SESSION / 2, &m);
        assert!(c.tick(t1 + SESSION - Duration::from_millis(1), Some(2), &m).is_empty());
        let actions = c.tick(t1 + SESSION, Some(2), &m);
        assert_eq!(actions, vec![Action::Fence(3)]);
        // Proposed once, not again while in flight.
        beat(t1 + SESSION * 3 / 2, &m);
        assert!(c.tick(t1 + SESSION * 3 / 2, Some(2), &m).is_empty());
        assert_eq!(m.apply(&MetaCommand::FenceBroker { node: 3 }), MetaResponse::Ok);
        c.fence_done(3);
        beat(t1 + SESSION * 2, &m);
        assert!(c.tick(t1 + SESSION * 2, Some(2), &m).is_empty(), "a fenced broker is not fenced again");
        // The fenced broker comes back: its heartbeat says it must register again.
        assert!(!c.on_heartbeat(t1 + SESSION * 2, 3, 1, &m));
        // A new term (another takeover) restarts the grace.
        let t2 = t1 + SESSION * 3;
        assert!(c.tick(t2, Some(5), &m).is_empty());
        assert!(!c.tick(t2 + SESSION, Some(5), &m).is_empty());
    }

    #[test]
    fn preferred_leaders_are_balanced_a_round_at_a_time() {
        let t0 = Instant::now();
        let c = Controller::new(SESSION, t0);
        let mut m = metadata();
        let assignment = place(0, 3, 3, &m.placeable_brokers(), &mut m.replica_load()).unwrap();
        let replication =
            ReplicationConfig { replication_factor: 3, min_insync_replicas: 1, unclean_leader_election: false };
        let create = MetaCommand::CreateTopic { name: "t".into(), config: Default::default(), replication, assignment };
        assert_eq!(m.apply(&create), MetaResponse::Ok);
        // Node 1 leaves and comes back: its partition's leadership moved and its ISR place too.
        m.apply(&MetaCommand::FenceBroker { node: 1 });
        m.apply(&MetaCommand::RegisterBroker(broker(1)));
        let p = m.topics["t"].partitions.iter().position(|p| p.replicas[0].node == 1).unwrap();
        let part = m.topics["t"].partitions[p].clone();
        assert_ne!(part.leader, Some(1));
        let mut isr = part.isr.clone();
        isr.push(1);
        let expand = MetaCommand::AlterIsr {
            topic: "t".into(),
            partition: p as u32,
            leader_epoch: part.leader_epoch,
            partition_epoch: part.partition_epoch,
            isr,
        };
        assert_eq!(m.apply(&expand), MetaResponse::Ok);

        assert!(c.tick(t0, Some(1), &m).is_empty(), "the first round waits an interval");
        let t = t0 + Duration::from_millis(LEADER_BALANCE_INTERVAL_MS);
        for n in 1..=3 {
            c.on_heartbeat(t, n, 1, &m);
        }
        let actions = c.tick(t, Some(1), &m);
        let [Action::Balance(elections)] = actions.as_slice() else { panic!("{actions:?}") };
        assert_eq!(elections.len(), 1);
        assert!(matches!(&elections[0], MetaCommand::ElectLeader { leader: 1, .. }));
        let later = t + Duration::from_millis(LEADER_BALANCE_INTERVAL_MS);
        for n in 1..=3 {
            c.on_heartbeat(later, n, 1, &m);
        }
        assert!(c.tick(later, Some(1), &m).is_empty(), "one round at a time");
        assert_eq!(m.apply(&elections[0]), MetaResponse::Ok);
        c.balance_done();
        let much_later = later + Duration::from_millis(LEADER_BALANCE_INTERVAL_MS);
        for n in 1..=3 {
            c.on_heartbeat(much_later, n, 1, &m);
        }
        assert!(c.tick(much_later, Some(1), &m).is_empty(), "balanced");
    }
}
