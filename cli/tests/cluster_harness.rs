//! Self-tests of the cluster harness (`tests/cluster/`): the fault-injecting proxy against
//! plain TCP echo servers, the nemesis's schedule, the checker on hand-built histories (each
//! check with a history that violates it), and the process harness and the workload against
//! the current binary, started as independent single-node brokers behind the proxies
//! (`cluster_flags: false`) until the cluster exists.
#![allow(clippy::unwrap_used)]

mod cluster;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::time::Duration;

use cluster::proxy::{advertised_ip, connect_from, node_ip, CutMode, Peer, Proxy, ProxyOptions};

/// Reads block at most this long in these tests: a bound, not a timing assertion.
const READ_WAIT: Duration = Duration::from_secs(10);
/// How long a black-holed connection is watched for data that must not come.
const SILENCE: Duration = Duration::from_millis(300);

// ---- proxy ---------------------------------------------------------------------------------

/// An echo server on `ip` (any port), one thread per connection; runs until the test ends.
fn echo_server(ip: Ipv4Addr) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                loop {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if stream.write_all(&buffer[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Nodes 1..=3, each with an echo server behind a proxy port; returns the proxy and each
/// node's front (advertised) address.
fn echo_cluster(options: ProxyOptions) -> (Proxy, Vec<SocketAddrV4>) {
    let mut proxy = Proxy::new(options);
    let mut fronts = Vec::new();
    for node in 1..=3 {
        let back = echo_server(node_ip(node));
        let front = proxy.add(node, SocketAddr::new(advertised_ip(node).into(), 0), back).unwrap();
        let SocketAddr::V4(front) = front else { unreachable!() };
        fronts.push(front);
    }
    (proxy, fronts)
}

/// Connects as `peer` (from its node address, or from 127.0.0.1 as a client).
fn connect_as(peer: Peer, to: SocketAddrV4) -> TcpStream {
    let source = match peer {
        Peer::Node(n) => node_ip(n),
        Peer::Client => Ipv4Addr::LOCALHOST,
    };
    let stream = connect_from(source, to).unwrap();
    stream.set_read_timeout(Some(READ_WAIT)).unwrap();
    stream
}

/// Sends `message` and expects it echoed back.
fn echoes(stream: &mut TcpStream, message: &[u8]) -> bool {
    if stream.write_all(message).is_err() {
        return false;
    }
    let mut back = vec![0u8; message.len()];
    stream.read_exact(&mut back).is_ok() && back == message
}

/// The connection is (or becomes) closed: a read ends with end-of-stream or an error other
/// than a timeout.
fn is_closed(stream: &mut TcpStream) -> bool {
    let _ = stream.write_all(b"x");
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

/// A new connection fails fast: refused at connect (a reset can beat connect's return) or
/// closed right after.
fn refused(peer: Peer, to: SocketAddrV4) -> bool {
    let source = match peer {
        Peer::Node(n) => node_ip(n),
        Peer::Client => Ipv4Addr::LOCALHOST,
    };
    match connect_from(source, to) {
        Err(_) => true,
        Ok(mut stream) => {
            stream.set_read_timeout(Some(READ_WAIT)).unwrap();
            is_closed(&mut stream)
        }
    }
}

/// Polls `condition` until it holds, for at most `READ_WAIT`.
fn wait_for(condition: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + READ_WAIT;
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "condition not met within {READ_WAIT:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Nothing arrives within `SILENCE`.
fn is_silent(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(SILENCE)).unwrap();
    let mut byte = [0u8; 1];
    let silent =
        matches!(stream.read(&mut byte), Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut));
    stream.set_read_timeout(Some(READ_WAIT)).unwrap();
    silent
}

#[test]
fn proxy_forwards_both_ways_and_tells_nodes_from_clients() {
    let (proxy, fronts) = echo_cluster(ProxyOptions::default());
    let mut client = connect_as(Peer::Client, fronts[0]);
    let mut node2 = connect_as(Peer::Node(2), fronts[0]);
    assert!(echoes(&mut client, b"hello"));
    assert!(echoes(&mut node2, b"from node 2"));
    // A large message in both directions at once (more than the copy buffer).
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    assert!(echoes(&mut client, &big));
    // Half-close travels through: the echo server sees end of stream and closes.
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    let stats = proxy.stats();
    assert_eq!(stats.accepted, 2);
    assert_eq!(stats.forwarded, 2);
    assert_eq!(Peer::of("127.0.1.7:9".parse().unwrap()), Peer::Node(7));
    assert_eq!(Peer::of("127.0.2.7:9".parse().unwrap()), Peer::Client);
    assert_eq!(Peer::of("127.0.0.1:9".parse().unwrap()), Peer::Client);
}

#[test]
fn proxy_cut_closes_existing_and_refuses_new_connections_of_the_pair_only() {
    let (proxy, fronts) = echo_cluster(ProxyOptions::default());
    let mut one_to_two = connect_as(Peer::Node(1), fronts[1]);
    let mut two_to_one = connect_as(Peer::Node(2), fronts[0]);
    let mut one_to_three = connect_as(Peer::Node(1), fronts[2]);
    let mut client_to_two = connect_as(Peer::Client, fronts[1]);
    for stream in [&mut one_to_two, &mut two_to_one, &mut one_to_three, &mut client_to_two] {
        assert!(echoes(stream, b"before"));
    }
    proxy.cut(1, 2);
    // Existing connections between 1 and 2, both directions, are closed at once.
    assert!(is_closed(&mut one_to_two));
    assert!(is_closed(&mut two_to_one));
    // New ones are refused (reset), both directions.
    assert!(refused(Peer::Node(1), fronts[1]));
    assert!(refused(Peer::Node(2), fronts[0]));
    // Everything else still flows.
    assert!(echoes(&mut one_to_three, b"unaffected"));
    assert!(echoes(&mut client_to_two, b"unaffected"));
    assert!(echoes(&mut connect_as(Peer::Node(3), fronts[1]), b"unaffected"));
    assert_eq!(proxy.cut_of(Peer::Node(1), 2), Some(CutMode::Refuse));
    assert_eq!(proxy.cut_of(Peer::Node(2), 1), Some(CutMode::Refuse));
    assert_eq!(proxy.cut_of(Peer::Node(1), 3), None);
    proxy.heal(1, 2);
    assert!(echoes(&mut connect_as(Peer::Node(1), fronts[1]), b"healed"));
    assert!(echoes(&mut connect_as(Peer::Node(2), fronts[0]), b"healed"));
    let stats = proxy.stats();
    assert_eq!(stats.closed_by_cut, 2);
    assert_eq!(stats.refused, 2);
}

#[test]
fn proxy_isolate_cuts_a_node_from_all_others_and_heal_all_undoes_it() {
    let (proxy, fronts) = echo_cluster(ProxyOptions::default());
    proxy.isolate(3);
    assert!(refused(Peer::Node(1), fronts[2]));
    assert!(refused(Peer::Node(2), fronts[2]));
    assert!(refused(Peer::Node(3), fronts[0]));
    assert!(refused(Peer::Node(3), fronts[1]));
    // Node 3 still reaches itself through its advertised address, and clients reach it.
    assert!(echoes(&mut connect_as(Peer::Node(3), fronts[2]), b"self"));
    assert!(echoes(&mut connect_as(Peer::Client, fronts[2]), b"client"));
    // The majority still talks.
    assert!(echoes(&mut connect_as(Peer::Node(1), fronts[1]), b"majority"));
    proxy.heal_all();
    assert!(proxy.cuts().is_empty());
    assert!(echoes(&mut connect_as(Peer::Node(1), fronts[2]), b"healed"));
    assert!(echoes(&mut connect_as(Peer::Node(3), fronts[0]), b"healed"));
}

#[test]
fn proxy_cut_clients_leaves_nodes_connected() {
    let (proxy, fronts) = echo_cluster(ProxyOptions::default());
    let mut client = connect_as(Peer::Client, fronts[0]);
    assert!(echoes(&mut client, b"before"));
    proxy.cut_clients(1);
    assert!(is_closed(&mut client));
    assert!(refused(Peer::Client, fronts[0]));
    assert!(echoes(&mut connect_as(Peer::Client, fronts[1]), b"other node"));
    assert!(echoes(&mut connect_as(Peer::Node(2), fronts[0]), b"node"));
    proxy.heal_clients(1);
    assert!(echoes(&mut connect_as(Peer::Client, fronts[0]), b"healed"));
}

#[test]
fn proxy_black_hole_holds_connections_silently_and_resumes_them_on_heal() {
    let options = ProxyOptions { cut_mode: CutMode::BlackHole, ..ProxyOptions::default() };
    let (proxy, fronts) = echo_cluster(options);
    let mut existing = connect_as(Peer::Node(1), fronts[1]);
    assert!(echoes(&mut existing, b"before"));
    proxy.cut(1, 2);
    // An existing connection stalls: what is sent is neither echoed nor refused.
    existing.write_all(b"held").unwrap();
    assert!(is_silent(&mut existing));
    // A new one is accepted, then nothing comes back.
    let mut new = connect_as(Peer::Node(2), fronts[0]);
    new.write_all(b"queued").unwrap();
    assert!(is_silent(&mut new));
    // Both are held (the proxy's threads got to them: bounded wait, no timing assumed).
    wait_for(|| proxy.stats().held == 2);
    proxy.heal(1, 2);
    // Both go on where they stopped, as TCP would after the partition.
    let mut back = [0u8; 4];
    existing.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"held");
    let mut back = [0u8; 6];
    new.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"queued");
    let stats = proxy.stats();
    assert_eq!(stats.held, 2);
    assert_eq!(stats.refused + stats.closed_by_cut, 0);
    // Switching a black hole to a refusing cut closes what it held.
    let mut held = connect_as(Peer::Node(1), fronts[1]);
    proxy.cut(1, 2);
    held.write_all(b"x").unwrap();
    assert!(is_silent(&mut held));
    proxy.cut_with(1, 2, CutMode::Refuse);
    assert!(is_closed(&mut held));
}

#[test]
fn proxy_drop_closes_connections_and_listeners() {
    let (proxy, fronts) = echo_cluster(ProxyOptions::default());
    let mut client = connect_as(Peer::Client, fronts[0]);
    assert!(echoes(&mut client, b"before"));
    let options = ProxyOptions { cut_mode: CutMode::BlackHole, ..ProxyOptions::default() };
    assert_eq!(proxy.options().cut_mode, CutMode::Refuse);
    drop(proxy);
    assert!(is_closed(&mut client));
    assert!(TcpStream::connect(fronts[0]).is_err(), "the front port still accepts after drop");
    // The port is free again.
    TcpListener::bind(fronts[0]).unwrap();
    // A proxy holding black-holed connections stops too.
    let (proxy, fronts) = echo_cluster(options);
    proxy.isolate(1);
    let mut held = connect_as(Peer::Node(2), fronts[0]);
    held.write_all(b"x").unwrap();
    assert!(is_silent(&mut held));
    drop(proxy);
    assert!(is_closed(&mut held));
}

#[test]
fn proxy_resets_connections_past_its_bound_and_when_nothing_listens_behind() {
    let options = ProxyOptions { connections_max: 2, ..ProxyOptions::default() };
    let (proxy, fronts) = echo_cluster(options);
    let mut a = connect_as(Peer::Client, fronts[0]);
    let mut b = connect_as(Peer::Client, fronts[0]);
    assert!(echoes(&mut a, b"a"));
    assert!(echoes(&mut b, b"b"));
    assert!(refused(Peer::Client, fronts[0]));
    assert_eq!(proxy.stats().overflow, 1);
    drop(proxy);
    // Nothing behind a front port: the connection is reset, not left hanging.
    let mut proxy = Proxy::new(ProxyOptions::default());
    let nothing = TcpListener::bind((node_ip(4), 0)).unwrap();
    let back = nothing.local_addr().unwrap();
    drop(nothing);
    let SocketAddr::V4(front) = proxy.add(4, SocketAddr::new(advertised_ip(4).into(), 0), back).unwrap() else {
        unreachable!()
    };
    assert!(refused(Peer::Client, front));
    assert_eq!(proxy.stats().upstream_failed, 1);
}

/// Binds `addr` without SO_REUSEADDR (and closes it): fails while any socket, even one in
/// TIME_WAIT, holds the address — as a node's bind of a port it shares with SO_REUSEPORT
/// does.
fn bind_without_reuse(addr: SocketAddrV4) -> std::io::Result<()> {
    // SAFETY: socket(2) takes no pointers; a non-negative result is a descriptor we own.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nothing else; it closes on drop.
    let _owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let sockaddr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*addr.ip()).to_be() },
        sin_zero: [0; 8],
    };
    let size = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: bind reads `size` bytes of `sockaddr`, a sockaddr_in.
    if unsafe { libc::bind(fd, (&sockaddr as *const libc::sockaddr_in).cast(), size) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[test]
fn proxy_leaves_no_time_wait_on_a_node_that_closes_first() {
    // A node that closes first (or dies) would keep its side of the connection in TIME_WAIT
    // for a minute after the client closes too, and a restarted node could not bind that port
    // again (for a port shared with SO_REUSEPORT). The proxy resets its upstream side instead.
    let listener = TcpListener::bind((node_ip(5), 0)).unwrap();
    let SocketAddr::V4(back) = listener.local_addr().unwrap() else { unreachable!() };
    let mut proxy = Proxy::new(ProxyOptions::default());
    let SocketAddr::V4(front) = proxy.add(5, SocketAddr::new(advertised_ip(5).into(), 0), back.into()).unwrap() else {
        unreachable!()
    };
    let mut client = connect_as(Peer::Client, front);
    client.write_all(b"x").unwrap();
    let (mut node_side, _) = listener.accept().unwrap();
    let mut byte = [0u8; 1];
    node_side.read_exact(&mut byte).unwrap();
    drop(listener);
    drop(node_side); // The node closes first.
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    drop(client);
    wait_for(|| bind_without_reuse(back).is_ok());
}

// ---- nemesis and startup parsing -----------------------------------------------------------

#[test]
fn nemesis_schedule_is_a_function_of_the_seed() {
    use cluster::nemesis::{Fault, FaultKind, Nemesis, NemesisOptions};
    let options = |seed| NemesisOptions { seed, steps: 50, ..NemesisOptions::default() };
    let nodes = [1, 2, 3];
    let a = Nemesis::new(options(7), &nodes);
    let b = Nemesis::new(options(7), &nodes);
    let c = Nemesis::new(options(8), &nodes);
    assert_eq!(a.schedule(), b.schedule());
    assert_ne!(a.schedule(), c.schedule());
    for step in a.schedule() {
        assert!(options(7).kinds.contains(&step.fault.kind()), "{step:?}");
        assert!(step.fault.nodes().iter().all(|n| nodes.contains(n)), "{step:?}");
        if let Fault::Partition(x, y) = step.fault {
            assert_ne!(x, y);
        }
        assert!((300..=1_500).contains(&(step.hold.as_millis() as u64)), "{step:?}");
        assert!((200..=1_000).contains(&(step.calm.as_millis() as u64)), "{step:?}");
    }
    // Every kind shows up in 50 steps, and only the kinds asked for.
    for kind in [FaultKind::Kill, FaultKind::Pause, FaultKind::Partition, FaultKind::Isolate] {
        assert!(a.schedule().iter().any(|s| s.fault.kind() == kind), "{kind:?} never drawn");
    }
    let pauses = Nemesis::new(NemesisOptions { kinds: vec![FaultKind::Pause], ..options(3) }, &nodes);
    assert!(pauses.schedule().iter().all(|s| matches!(s.fault, Fault::Pause(_))));
}

#[test]
fn startup_lines_are_parsed_and_unknown_lines_skipped() {
    use cluster::{parse_addresses, Expected, PortLayout};
    let lines: Vec<String> = [
        "shardlog listening on 127.0.1.2:10001 with 2 shards",
        "  shard 0: 127.0.1.2:10002",
        "  cluster: 127.0.1.2:10000",
        "  shard 1: 127.0.1.2:10003",
        "  kafka: 127.0.1.2:10004",
        "  kafka broker 0: 127.0.2.2:10005",
    ]
    .iter()
    .map(|l| (*l).to_owned())
    .collect();
    let expected = Expected { shards: 2, kafka: true, metrics: false };
    // Not all there yet: the second Kafka broker line is missing.
    assert_eq!(parse_addresses(&lines, &expected), None);
    let mut all = lines.clone();
    all.push("  kafka broker 1: 127.0.2.2:10006".to_owned());
    let printed = parse_addresses(&all, &expected).unwrap();
    assert_eq!(printed.native, "127.0.1.2:10001".parse().unwrap());
    assert_eq!(printed.native_shards.len(), 2);
    assert_eq!(printed.kafka_shards[1], "127.0.2.2:10006".parse().unwrap());
    let without_kafka = Expected { shards: 2, kafka: false, metrics: false };
    assert!(parse_addresses(&lines, &without_kafka).is_some());
    let layout = PortLayout::new(10_000, 2, true, true);
    assert_eq!(layout.all().len() as u16, PortLayout::count(2, true, true));
    assert_eq!((layout.cluster, layout.native, layout.native_shard_base), (10_000, 10_001, 10_002));
    assert_eq!((layout.kafka, layout.kafka_shard_base, layout.metrics), (Some(10_004), Some(10_005), Some(10_007)));
}

// ---- checker ---------------------------------------------------------------------------------

mod checker_tests {
    use bytes::Bytes;
    use engine::batch::BatchBuilder;

    use super::cluster::checker::{check_all, Check, CheckReport, FinalLog, ReplicaBatches, Verdict};
    use super::cluster::history::{History, Op, OpId, Ret};

    const T: &str = "t";

    fn produce(history: &History, client: u64, partition: u32, value: &str) -> OpId {
        let op = Op::Produce { topic: T.to_owned(), partition, value: value.to_owned(), idempotent: false };
        history.invoke(client, op)
    }

    fn acked(history: &History, client: u64, partition: u32, value: &str, offset: Option<u64>) {
        let id = produce(history, client, partition, value);
        history.ok(id, Ret::Produced { offset });
    }

    fn commit(history: &History, client: u64, offset: u64) -> OpId {
        history.invoke(client, Op::Commit { group: "g".into(), topic: T.into(), partition: 0, offset })
    }

    fn fetch(history: &History, client: u64) -> OpId {
        history.invoke(client, Op::FetchOffset { group: "g".into(), topic: T.into(), partition: 0 })
    }

    fn log(partition: u32, values: &[&str]) -> FinalLog {
        FinalLog::new(T, partition, values.iter().enumerate().map(|(i, v)| (i as u64, (*v).to_owned())))
    }

    /// One batch per value, at its offset.
    fn batches(values: &[&str]) -> Vec<(u64, Bytes)> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut builder = BatchBuilder::new().base_offset(i as i64);
                builder.push(None, Some(v.as_bytes()), 1_700_000_000_000, &[]);
                (i as u64, builder.build().unwrap())
            })
            .collect()
    }

    fn replicas(leader: u32, per_node: Vec<(u32, Vec<(u64, Bytes)>)>, hw: u64) -> ReplicaBatches {
        ReplicaBatches {
            topic: T.into(),
            partition: 0,
            high_watermark: hw,
            leader,
            replicas: per_node.into_iter().collect(),
        }
    }

    fn report(verdict: &Verdict, check: Check) -> &CheckReport {
        verdict.report(check).unwrap()
    }

    /// The one failing check of `verdict` is `check`; returns its text.
    fn only_failure(verdict: &Verdict, check: Check) -> String {
        let failed: Vec<Check> = verdict.reports.iter().filter(|r| !r.is_valid()).map(|r| r.check).collect();
        assert_eq!(failed, vec![check], "{verdict}");
        report(verdict, check).to_string()
    }

    /// A history every check accepts: acknowledged, failed and unknown produces (the unknown
    /// ones present or not), reads in two sessions, commits and fetches, identical replicas.
    fn valid() -> (History, Vec<FinalLog>, Vec<ReplicaBatches>) {
        let h = History::new();
        acked(&h, 1, 0, "c1-0", Some(0));
        let unknown = produce(&h, 2, 0, "c2-0");
        h.nemesis("begin kill -9 node 2", vec![2]);
        h.info(unknown, "timed out");
        acked(&h, 1, 0, "c1-1", None); // No offset reported: found by value.
        let failed = produce(&h, 2, 0, "c2-1");
        h.fail(failed, "connection refused");
        let lost_unknown = produce(&h, 2, 0, "c2-2");
        h.info(lost_unknown, "timed out"); // Unknown and absent: fine.
        h.nemesis("end kill -9 node 2", vec![2]);
        let never = produce(&h, 3, 0, "c3-0"); // Never completed: unknown.
        let _ = never;
        let session = h.new_session();
        h.read(4, session, T, 0, 0, "c1-0");
        h.read(4, session, T, 0, 2, "c1-1");
        let second = h.new_session();
        h.read(5, second, T, 0, 1, "c2-0");
        let c1 = commit(&h, 6, 5);
        h.ok(c1, Ret::Committed);
        let f1 = fetch(&h, 7);
        // A commit concurrent with a fetch may or may not be seen.
        let c2 = commit(&h, 6, 9);
        h.ok(f1, Ret::Fetched { offset: Some(5) });
        h.ok(c2, Ret::Committed);
        let f2 = fetch(&h, 7);
        h.ok(f2, Ret::Fetched { offset: Some(9) });
        let values = ["c1-0", "c2-0", "c1-1"];
        let logs = vec![log(0, &values)];
        let replicas = vec![replicas(1, vec![(1, batches(&values)), (2, batches(&values)), (3, batches(&values))], 3)];
        (h, logs, replicas)
    }

    #[test]
    fn a_valid_history_passes_every_check() {
        let (h, logs, replicas) = valid();
        let verdict = check_all(&h, &logs, &replicas);
        assert!(verdict.is_valid(), "{verdict}");
        assert_eq!(report(&verdict, Check::NoLostAcks).checked, 2);
        assert_eq!(report(&verdict, Check::NoDuplicates).checked, 3);
        assert_eq!(report(&verdict, Check::ReadsStable).checked, 3);
        assert_eq!(report(&verdict, Check::ReplicasIdentical).checked, 9);
        assert_eq!(report(&verdict, Check::CommitsMonotonic).checked, 2);
        verdict.assert_valid("");
    }

    #[test]
    fn a_lost_acknowledged_record_fails_check_a() {
        // Acknowledged at offset 1, but the final log holds another value there; the report
        // names the value, both offsets and the nemesis event during the operation.
        let h = History::new();
        acked(&h, 1, 0, "c1-0", Some(0));
        let id = produce(&h, 1, 0, "c1-1");
        h.nemesis("begin partition 1 | 2", vec![1, 2]);
        h.ok(id, Ret::Produced { offset: Some(1) });
        h.nemesis("end partition 1 | 2", vec![1, 2]);
        let other = produce(&h, 2, 0, "c2-0");
        h.info(other, "timed out");
        let logs = vec![log(0, &["c1-0", "c2-0"])];
        let verdict = check_all(&h, &logs, &[]);
        let text = only_failure(&verdict, Check::NoLostAcks);
        assert!(text.contains("lost: c1-1 acknowledged at t-0@1; the final log holds c2-0 there"), "{text}");
        assert!(text.contains("c1-1 is nowhere in the final logs"), "{text}");
        assert!(text.contains("nemesis: begin partition 1 | 2"), "{text}");
        assert!(text.contains("nemesis: end partition 1 | 2"), "{text}");
        // Acknowledged without an offset and absent: lost too.
        let h = History::new();
        acked(&h, 1, 0, "c1-0", None);
        let verdict = check_all(&h, &[log(0, &[])], &[]);
        let text = only_failure(&verdict, Check::NoLostAcks);
        assert!(text.contains("lost: c1-0 acknowledged (no offset reported)"), "{text}");
        // Acknowledged at one offset, found at another: also reported.
        let h = History::new();
        acked(&h, 1, 0, "c1-0", Some(1));
        let other = produce(&h, 2, 0, "c2-0");
        h.info(other, "?");
        let verdict = check_all(&h, &[log(0, &["c1-0", "c2-0"])], &[]);
        let text = only_failure(&verdict, Check::NoLostAcks);
        assert!(text.contains("c1-0 is at t-0@0"), "{text}");
    }

    #[test]
    fn duplicates_and_unknown_values_fail_check_b() {
        let h = History::new();
        acked(&h, 1, 0, "c1-0", None);
        let verdict = check_all(&h, &[log(0, &["c1-0", "c1-0"])], &[]);
        let text = only_failure(&verdict, Check::NoDuplicates);
        assert!(
            text.contains("duplicate: c1-0 is in the final log 2 times (at t-0@0, t-0@1), produced 1 time(s)"),
            "{text}"
        );
        // A non-idempotent producer asked twice for the same value may store it twice ...
        let h = History::new();
        for _ in 0..2 {
            let id = produce(&h, 1, 0, "c1-0");
            h.info(id, "timed out, retried");
        }
        assert!(check_all(&h, &[log(0, &["c1-0", "c1-0"])], &[]).is_valid());
        // ... an idempotent one may not.
        let h = History::new();
        for _ in 0..2 {
            let op = Op::Produce { topic: T.into(), partition: 0, value: "c1-0".into(), idempotent: true };
            let id = h.invoke(1, op);
            h.info(id, "timed out, retried");
        }
        let verdict = check_all(&h, &[log(0, &["c1-0", "c1-0"])], &[]);
        let text = only_failure(&verdict, Check::NoDuplicates);
        assert!(text.contains("by an idempotent producer"), "{text}");
        // A value nobody produced.
        let h = History::new();
        let verdict = check_all(&h, &[log(0, &["ghost"])], &[]);
        let text = only_failure(&verdict, Check::NoDuplicates);
        assert!(text.contains("ghost is in the final log at t-0@0 but no client produced it"), "{text}");
    }

    #[test]
    fn backwards_and_unstable_reads_fail_check_c() {
        let produced = |h: &History| {
            for (i, v) in ["c1-0", "c1-1", "c1-2"].iter().enumerate() {
                acked(h, 1, 0, v, Some(i as u64));
            }
        };
        let logs = vec![log(0, &["c1-0", "c1-1", "c1-2"])];
        // Offsets going backwards within one session.
        let h = History::new();
        produced(&h);
        let s = h.new_session();
        h.read(2, s, T, 0, 1, "c1-1");
        h.read(2, s, T, 0, 0, "c1-0");
        let text = only_failure(&check_all(&h, &logs, &[]), Check::ReadsStable);
        assert!(text.contains("offsets went backwards in read session 1 of t-0: 0 after 1"), "{text}");
        // The same offset twice in one session is backwards too (a record delivered twice).
        let h = History::new();
        produced(&h);
        let s = h.new_session();
        h.read(2, s, T, 0, 2, "c1-2");
        h.read(2, s, T, 0, 2, "c1-2");
        only_failure(&check_all(&h, &logs, &[]), Check::ReadsStable);
        // A read of data the final log no longer holds (truncated after the read), around a
        // kill.
        let h = History::new();
        produced(&h);
        let unacked = produce(&h, 3, 0, "c3-0");
        h.nemesis("begin kill -9 node 1", vec![1]);
        let s = h.new_session();
        h.read(2, s, T, 0, 3, "c3-0");
        h.info(unacked, "connection lost");
        let text = only_failure(&check_all(&h, &logs, &[]), Check::ReadsStable);
        assert!(text.contains("unstable read: c3-0 read at t-0@3, but the final log has nothing there"), "{text}");
        assert!(text.contains("nemesis: begin kill -9 node 1"), "{text}");
    }

    #[test]
    fn diverging_replicas_fail_check_d() {
        let values = ["a", "b", "c"];
        let h = History::new();
        for (i, v) in values.iter().enumerate() {
            acked(&h, 1, 0, v, Some(i as u64));
        }
        h.nemesis("begin kill -9 node 3", vec![3]);
        let logs = vec![log(0, &values)];
        // Node 3's batch at offset 1 has another producer id: byte-different, valid CRC.
        let mut node3 = batches(&values);
        let mut builder = BatchBuilder::new().base_offset(1).producer(42, 0, 0);
        builder.push(None, Some(b"b"), 1_700_000_000_000, &[]);
        node3[1] = (1, builder.build().unwrap());
        let r = replicas(1, vec![(1, batches(&values)), (2, batches(&values)), (3, node3)], 3);
        let text = only_failure(&check_all(&h, &logs, &[r]), Check::ReplicasIdentical);
        assert!(text.contains("t-0: node 3's batch at 1 differs from the leader's (node 1)"), "{text}");
        assert!(text.contains("first at byte 17, in fields crc, producerId"), "{text}");
        assert!(text.contains("nemesis: begin kill -9 node 3"), "{text}");
        // A follower missing a batch below the high watermark.
        let short = batches(&values[..2]);
        let r = replicas(1, vec![(1, batches(&values)), (2, short)], 3);
        let text = only_failure(&check_all(&h, &logs, &[r]), Check::ReplicasIdentical);
        assert!(text.contains("node 2 lacks the one at 2"), "{text}");
        // Differences at or above the high watermark do not count.
        let mut longer = batches(&values);
        let mut builder = BatchBuilder::new().base_offset(3);
        builder.push(None, Some(b"unreplicated"), 1_700_000_000_000, &[]);
        longer.push((3, builder.build().unwrap()));
        let r = replicas(1, vec![(1, batches(&values)), (2, longer)], 3);
        assert!(check_all(&h, &logs, &[r]).is_valid());
        // The leader's batches must decode to the final log.
        let wrong = batches(&["a", "x", "c"]);
        let r = replicas(1, vec![(1, wrong.clone()), (2, wrong)], 3);
        let text = only_failure(&check_all(&h, &logs, &[r]), Check::ReplicasIdentical);
        assert!(text.contains("the leader's batch holds x at 1"), "{text}");
        // A corrupt leader batch is reported, not panicked on.
        let mut corrupt = batches(&values);
        let mut bytes = corrupt[2].1.to_vec();
        *bytes.last_mut().unwrap() ^= 0xFF;
        corrupt[2].1 = Bytes::from(bytes);
        let r = replicas(1, vec![(1, corrupt)], 3);
        let text = only_failure(&check_all(&h, &logs, &[r]), Check::ReplicasIdentical);
        assert!(text.contains("the leader's batch at 2 is invalid"), "{text}");
    }

    #[test]
    fn committed_offsets_going_backwards_fail_check_e() {
        // A fetch that starts after a commit of 9 was acknowledged sees 5.
        let h = History::new();
        let c = commit(&h, 1, 5);
        h.ok(c, Ret::Committed);
        let c = commit(&h, 1, 9);
        h.ok(c, Ret::Committed);
        h.nemesis("begin isolate node 1", vec![1]);
        let f = fetch(&h, 2);
        h.ok(f, Ret::Fetched { offset: Some(5) });
        let text = only_failure(&check_all(&h, &[], &[]), Check::CommitsMonotonic);
        assert!(
            text.contains("committed offset went backwards: g t-0 fetched 5 after a commit of 9 was acknowledged"),
            "{text}"
        );
        assert!(text.contains("nemesis: begin isolate node 1"), "{text}");
        // Nothing at all after an acknowledged commit.
        let h = History::new();
        let c = commit(&h, 1, 5);
        h.ok(c, Ret::Committed);
        let f = fetch(&h, 2);
        h.ok(f, Ret::Fetched { offset: None });
        let text = only_failure(&check_all(&h, &[], &[]), Check::CommitsMonotonic);
        assert!(text.contains("fetched nothing after a commit of 5"), "{text}");
        // An offset no commit wrote.
        let h = History::new();
        let f = fetch(&h, 2);
        h.ok(f, Ret::Fetched { offset: Some(77) });
        let text = only_failure(&check_all(&h, &[], &[]), Check::CommitsMonotonic);
        assert!(text.contains("fetched offset 77, which no commit"), "{text}");
        // A workload that commits backwards is reported as such.
        let h = History::new();
        let c = commit(&h, 1, 9);
        h.ok(c, Ret::Committed);
        let c = commit(&h, 1, 5);
        h.ok(c, Ret::Committed);
        let text = only_failure(&check_all(&h, &[], &[]), Check::CommitsMonotonic);
        assert!(text.contains("the workload committed backwards"), "{text}");
        // An unknown commit may or may not be seen; a failed fetch checks nothing.
        let h = History::new();
        let c = commit(&h, 1, 5);
        h.ok(c, Ret::Committed);
        let c = commit(&h, 1, 9);
        h.info(c, "timed out");
        let f = fetch(&h, 2);
        h.ok(f, Ret::Fetched { offset: Some(9) });
        let f = fetch(&h, 2);
        h.fail(f, "refused");
        let verdict = check_all(&h, &[], &[]);
        assert!(verdict.is_valid(), "{verdict}");
        assert_eq!(report(&verdict, Check::CommitsMonotonic).checked, 1);
    }

    #[test]
    #[should_panic(expected = "completed twice")]
    fn completing_an_operation_twice_is_a_harness_bug() {
        let h = History::new();
        let id = produce(&h, 1, 0, "c1-0");
        h.ok(id, Ret::Produced { offset: None });
        h.info(id, "again");
    }
}

// ---- the workload driver on an in-memory log ---------------------------------------------

mod workload_tests {
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Duration;

    use super::cluster::checker::{check_all, Check, FinalLog};
    use super::cluster::history::History;
    use super::cluster::workload::{
        produce_loop, read_final_log, read_loop, stop_flag, Answer, Fetched, ProduceFn, ProduceLoop, ReadFn, ReadLoop,
    };
    use super::cluster::{on_executor, WAIT};

    /// The driver's loops through the closure adapters, on a one-partition log in memory that
    /// appends every value but every 5th (refused: `Fail`), and does not answer every 7th
    /// (appended: `Unknown`); then the final log as read back, and the same log after it
    /// lost record 3.
    fn run(history: Arc<History>) -> (FinalLog, FinalLog) {
        on_executor(move || async move {
            let log: Rc<RefCell<Vec<String>>> = Rc::default();
            let producer = ProduceFn({
                let log = log.clone();
                move |_topic: String, _partition: u32, value: String| {
                    let log = log.clone();
                    async move {
                        let seq: u64 = value.rsplit('-').next().unwrap().parse().unwrap();
                        if seq % 5 == 4 {
                            return Answer::Fail("refused".into());
                        }
                        log.borrow_mut().push(value);
                        if seq % 7 == 6 {
                            return Answer::Unknown("no answer".into());
                        }
                        Answer::Ok(Some(log.borrow().len() as u64 - 1))
                    }
                }
            });
            let reader = ReadFn({
                let log = log.clone();
                move |_topic: String, _partition: u32, offset: u64| {
                    let log = log.clone();
                    async move {
                        let log = log.borrow();
                        let records = log.iter().enumerate().skip(offset as usize).map(|(i, v)| (i as u64, v.clone()));
                        Ok(Fetched { records: records.collect(), high_watermark: log.len() as u64 })
                    }
                }
            });
            let reader = Rc::new(reader);
            let (stop, reading) = (stop_flag(), stop_flag());
            let timeout = Duration::from_secs(1);
            let plan = ReadLoop {
                client: 2,
                topic: "t".into(),
                partitions: vec![0],
                op_timeout: timeout,
                idle_pause: Duration::from_millis(1),
            };
            let read_task = glommio::spawn_local({
                let (reader, history, reading) = (reader.clone(), history.clone(), reading.clone());
                async move { read_loop(&*reader, &history, &plan, &reading).await }
            });
            let plan =
                ProduceLoop { client: 1, topic: "t".into(), partitions: vec![0], values_max: 30, op_timeout: timeout };
            let stats = produce_loop(&producer, &history, &plan, &stop).await;
            assert_eq!((stats.ok, stats.failed, stats.unknown), (20, 6, 4));
            glommio::timer::sleep(Duration::from_millis(20)).await;
            reading.store(true, Ordering::SeqCst);
            assert!(read_task.await.records > 0);
            let complete = read_final_log(&*reader, "t", 0, WAIT).await.unwrap();
            log.borrow_mut()[3] = "c9-9".into();
            let lossy = read_final_log(&*reader, "t", 0, WAIT).await.unwrap();
            (complete, lossy)
        })
    }

    #[test]
    fn the_loops_feed_the_checker_which_catches_a_lost_record() {
        let history = Arc::new(History::new());
        let (complete, lossy) = run(history.clone());
        assert_eq!(complete.records.len(), 24);
        let verdict = check_all(&history, &[complete], &[]);
        assert!(verdict.is_valid(), "{verdict}");
        assert_eq!(verdict.report(Check::NoLostAcks).unwrap().checked, 20);
        // The same run against a log that lost offset 3 (c1-3, acknowledged): caught, by the
        // lost-ack check, by the reads (they saw c1-3 there), and as an unknown value.
        let verdict = check_all(&history, &[lossy], &[]);
        let text = verdict.to_string();
        assert!(!verdict.report(Check::NoLostAcks).unwrap().is_valid(), "{text}");
        assert!(text.contains("lost: c1-3 acknowledged at t-0@3; the final log holds c9-9 there"), "{text}");
        assert!(!verdict.report(Check::ReadsStable).unwrap().is_valid(), "{text}");
        assert!(!verdict.report(Check::NoDuplicates).unwrap().is_valid(), "{text}");
    }
}

// ---- the process harness and the workload, on the current binary ---------------------------

mod process_tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Duration;

    use client::{Acks, Client, ClientOptions, FetchPartition, Producer, ProducerOptions, Routing, TopicSettings};

    use super::cluster::checker::{check_all, Check, Verdict};
    use super::cluster::clients::{
        kafka_cluster, native_client, KafkaProducerAdapter, KafkaReader, NativeOffsets, NativeProducer, NativeReader,
    };
    use super::cluster::history::History;
    use super::cluster::nemesis::{FaultKind, Nemesis, NemesisOptions};
    use super::cluster::workload::{
        commit_loop, produce_loop, read_final_log, read_loop, stop_flag, CommitLoop, ProduceLoop, ReadLoop,
    };
    use super::cluster::{on_executor, seed_from_env, within, Cluster, ClusterOptions, StopOutcome, WAIT};

    /// Independent single-node brokers behind the proxies (the binary has no cluster yet).
    fn standalone(nodes: u32) -> Cluster {
        let seed = seed_from_env(1);
        Cluster::start(ClusterOptions { nodes, voters: nodes, cluster_flags: false, seed, ..ClusterOptions::default() })
    }

    fn client_options() -> ClientOptions {
        // Forward: everything through the advertised bootstrap, so through the proxy (a
        // standalone node advertises its own address for its shards).
        ClientOptions { routing: Routing::Forward, request_timeout_ms: 5_000, ..ClientOptions::default() }
    }

    /// Creates `topic` on `addr` and produces `values` durably to partition 0.
    fn create_and_produce(addr: String, topic: &'static str, values: Vec<String>) -> Vec<u64> {
        on_executor(move || async move {
            let client = std::rc::Rc::new(Client::connect(&addr, client_options()).await.unwrap());
            client.create_topic(topic, 1, TopicSettings::default()).await.unwrap();
            let options = ProducerOptions { acks: Acks::Durable, ..ProducerOptions::default() };
            let producer = Producer::new(client, options);
            let mut offsets = Vec::new();
            for value in &values {
                let ack = producer.send_to(topic, 0, None, Some(value.as_bytes()), &[], None).await.unwrap();
                offsets.push(ack.offset.unwrap());
            }
            offsets
        })
    }

    /// Partition 0 of `topic` on `addr`, or the error.
    fn read_all(addr: String, topic: &'static str) -> Result<Vec<String>, String> {
        on_executor(move || async move {
            let connect = within(WAIT, Client::connect(&addr, client_options())).await;
            let client = connect.ok_or("connect: no answer")?.map_err(|e| e.to_string())?;
            let fetch = FetchPartition { topic: topic.to_owned(), partition: 0, offset: 0, bytes_max: 1 << 20 };
            let results = client.fetch(0, 0, 1 << 20, vec![fetch]).await.map_err(|e| e.to_string())?;
            let mut bytes = bytes::BytesMut::new();
            for chunk in results.into_iter().flat_map(|r| r.records) {
                bytes.extend_from_slice(&chunk);
            }
            let mut values = Vec::new();
            for batch in engine::batch::split_batches(bytes.freeze()) {
                for record in batch.map_err(|e| e.to_string())?.records() {
                    let record = record.map_err(|e| e.to_string())?;
                    values.push(String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned());
                }
            }
            Ok(values)
        })
    }

    #[test]
    fn harness_starts_kills_restarts_pauses_cuts_and_stops_real_nodes() {
        let cluster = standalone(2);
        let ports = cluster.ports();
        for node in cluster.node_ids() {
            assert!(cluster.is_running(node));
            let printed = format!("shardlog listening on {}", cluster.bound(node).native);
            assert!(cluster.stdout(node).contains(&printed), "{}", cluster.diagnostics());
        }
        // Each standalone node lists its own Kafka broker, on its advertised address.
        let brokers = cluster.kafka_brokers(2).unwrap();
        assert_eq!(brokers.len(), 1, "{brokers:?}");
        assert_eq!(
            (brokers[0].host.as_str(), brokers[0].port),
            ("127.0.2.2", i32::from(ports.kafka_shard_base.unwrap()))
        );
        let kafka = ports.kafka.unwrap();
        assert_eq!(cluster.bootstrap_kafka(), format!("127.0.2.1:{kafka},127.0.2.2:{kafka}"));
        assert_eq!(cluster.bootstrap_native(), format!("127.0.2.1:{0},127.0.2.2:{0}", ports.native));
        assert_eq!(cluster.cluster_peers(), format!("1=127.0.2.1:{0},2=127.0.2.2:{0}", ports.cluster));

        // Records on node 1, through its proxy; they survive kill -9 and restart.
        let node1 = cluster.advertised(1).native.to_string();
        let values: Vec<String> = (0..3).map(|i| format!("v{i}")).collect();
        assert_eq!(create_and_produce(node1.clone(), "t", values.clone()), vec![0, 1, 2]);
        cluster.kill9(1);
        assert!(!cluster.is_running(1));
        cluster.restart(1);
        assert!(cluster.is_running(1));
        assert_eq!(read_all(node1.clone(), "t").unwrap(), values);
        assert!(cluster.stderr(1).contains("--- node 1 start #2"), "{}", cluster.diagnostics());
        // Restarting a running node kills it first.
        cluster.restart(1);
        assert_eq!(read_all(node1.clone(), "t").unwrap(), values);

        // Paused, then resumed: node 2 answers again.
        cluster.pause(2);
        assert!(cluster.is_paused(2) && cluster.is_running(2));
        cluster.resume(2);
        let node2 = cluster.advertised(2).native.to_string();
        assert_eq!(create_and_produce(node2, "u", vec!["w".into()]), vec![0]);

        // Clients cut from node 1 fail fast; healed, they get through.
        cluster.cut_clients(1);
        let refused = read_all(node1.clone(), "t").unwrap_err();
        assert!(refused.contains("lost") || refused.contains("connect"), "{refused}");
        cluster.heal();
        assert_eq!(read_all(node1, "t").unwrap(), values);

        let outcomes = cluster.stop_all();
        assert!(outcomes.iter().all(|(_, o)| matches!(o, StopOutcome::Exited(s) if s.success())), "{outcomes:?}");
        assert!(std::fs::read_dir(cluster.node_data_dir(1)).unwrap().next().is_some());
        // Stopped nodes can be started again.
        cluster.restart(2);
        assert!(cluster.is_running(2));
        let events: Vec<String> = cluster.events().into_iter().map(|e| e.what).collect();
        assert!(events.iter().any(|e| e == "kill -9 node 1"), "{events:?}");
        assert!(events.iter().any(|e| e == "pause node 2"), "{events:?}");
    }

    #[test]
    fn a_node_that_cannot_start_fails_the_start_with_its_output() {
        let options = ClusterOptions {
            nodes: 1,
            voters: 1,
            cluster_flags: false,
            extra_args: vec!["--no-such-flag".into()],
            ..ClusterOptions::default()
        };
        let Err(failure) = std::panic::catch_unwind(|| Cluster::start(options)) else {
            panic!("a node with an unknown flag started");
        };
        let message = failure.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("node 1 did not become ready: exited during startup"), "{message}");
        assert!(message.contains("--no-such-flag"), "{message}");
        // The run was kept for inspection: remove it.
        let dir = message.split("run dir ").nth(1).and_then(|rest| rest.split(", ports").next()).unwrap();
        assert!(std::path::Path::new(dir).join("node-1/stderr.log").exists(), "{dir}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The whole pipeline on one standalone node: both producers (durable / acks=all), both
    /// readers, offset commits and fetches, under a seeded nemesis of `kinds`; then the final
    /// log and every check. Returns the verdict and what to print with it.
    /// `SHARDLOG_TEST_SEED` picks another schedule.
    fn workload_on_a_real_node(kinds: Vec<FaultKind>) -> (Verdict, String) {
        const TOPIC: &str = "jepsen";
        const VALUES: u64 = 60;
        let cluster = standalone(1);
        let history = Arc::new(History::with_epoch(cluster.epoch()));
        let native = cluster.advertised(1).native.to_string();
        let kafka = cluster.bootstrap_kafka();
        on_executor({
            let native = native.clone();
            move || async move {
                let client = native_client(&native, client_options(), WAIT).await.unwrap();
                client.create_topic(TOPIC, 2, TopicSettings::default()).await.unwrap();
            }
        });
        let nemesis = Nemesis::new(
            NemesisOptions { seed: cluster.seed(), kinds, steps: 4, hold_ms: 50..=200, calm_ms: 50..=200 },
            &cluster.node_ids(),
        );
        let producing_done = stop_flag();
        let started = stop_flag();
        std::thread::scope(|s| {
            s.spawn(|| {
                // Faults during the workload, not its setup.
                cluster.wait_until(WAIT, || started.load(Ordering::SeqCst).then_some(()), || "workload start".into());
                nemesis.run(&cluster, &producing_done, Some(&history));
            });
            let (history, done, started) = (history.clone(), producing_done.clone(), started.clone());
            let (native, kafka) = (native.clone(), kafka.clone());
            on_executor(move || async move {
                let client = native_client(&native, client_options(), WAIT).await.unwrap();
                let kafka = kafka_cluster(&kafka, WAIT).await.unwrap();
                let reading = stop_flag();
                started.store(true, Ordering::SeqCst);
                let partitions = vec![0, 1];
                let op_timeout = Duration::from_secs(5);
                let produce = |client| ProduceLoop {
                    client,
                    topic: TOPIC.into(),
                    partitions: partitions.clone(),
                    values_max: VALUES,
                    op_timeout,
                };
                let read = |client| ReadLoop {
                    client,
                    topic: TOPIC.into(),
                    partitions: partitions.clone(),
                    op_timeout,
                    idle_pause: Duration::from_millis(5),
                };
                let commits = |client, commit| CommitLoop {
                    client,
                    group: "g".into(),
                    topic: TOPIC.into(),
                    partitions: partitions.clone(),
                    op_timeout,
                    pause: Duration::from_millis(10),
                    commit,
                };
                let readers = {
                    let (h1, h2, h3, h4) = (history.clone(), history.clone(), history.clone(), history.clone());
                    let (r1, r2, r3, r4) = (reading.clone(), reading.clone(), reading.clone(), reading.clone());
                    let (native_reader, kafka_reader) =
                        (NativeReader::new(client.clone()), KafkaReader::new(kafka.clone()));
                    let (offsets, fetch_only) =
                        (NativeOffsets::new(client.clone()), NativeOffsets::new(client.clone()));
                    let (plan1, plan2, plan3, plan4) = (read(3), read(4), commits(5, true), commits(6, false));
                    (
                        glommio::spawn_local(async move { read_loop(&native_reader, &h1, &plan1, &r1).await }),
                        glommio::spawn_local(async move { read_loop(&kafka_reader, &h2, &plan2, &r2).await }),
                        glommio::spawn_local(async move { commit_loop(&offsets, &h3, &plan3, &r3).await }),
                        glommio::spawn_local(async move { commit_loop(&fetch_only, &h4, &plan4, &r4).await }),
                    )
                };
                let native_producer = NativeProducer::new(client.clone());
                let kafka_producer = KafkaProducerAdapter::new(kafka.clone());
                let (p1, p2) = (produce(1), produce(2));
                let stats = futures_lite::future::zip(
                    produce_loop(&native_producer, &history, &p1, &done),
                    produce_loop(&kafka_producer, &history, &p2, &done),
                )
                .await;
                done.store(true, Ordering::SeqCst);
                // Let the readers catch up with the end (bounded: they stop when told).
                glommio::timer::sleep(Duration::from_millis(300)).await;
                reading.store(true, Ordering::SeqCst);
                let (a, b, c, d) = readers;
                (stats, a.await, b.await, c.await, d.await)
            })
        });
        cluster.recover();
        let logs = on_executor(move || async move {
            let client = native_client(&native, client_options(), WAIT).await.unwrap();
            let reader = NativeReader::new(client);
            let mut logs = Vec::new();
            for partition in 0..2 {
                logs.push(read_final_log(&reader, TOPIC, partition, WAIT).await.unwrap());
            }
            logs
        });
        let verdict = check_all(&history, &logs, &[]);
        for check in [Check::NoLostAcks, Check::NoDuplicates, Check::ReadsStable, Check::CommitsMonotonic] {
            assert!(verdict.report(check).unwrap().checked > 0, "{check} checked nothing\n{verdict}");
        }
        let context = format!("{}{}", nemesis.report(), cluster.diagnostics());
        cluster.stop_all_cleanly();
        (verdict, context)
    }

    /// Pauses and client cuts lose nothing on a single node: every check holds.
    #[test]
    fn workload_nemesis_and_checker_on_a_real_node() {
        let (verdict, context) = workload_on_a_real_node(vec![FaultKind::Pause, FaultKind::CutClients]);
        verdict.assert_valid(&context);
    }

    /// kill -9 and restart, with pauses and client cuts: no acknowledged record lost, none
    /// duplicated, committed offsets never backwards.
    ///
    /// Check (c) is only reported here, because today's single-node broker can fail it: Fetch
    /// serves records before they are fdatasync'ed (durability `sync` only delays the
    /// acknowledgement), so a consumer can read a record that the kill then loses, and after
    /// the restart its offset holds another record. Seen in 2 of 15 runs of three whole suites
    /// at once on two cores (a kill landing between a record's append and its sync; not
    /// reproducible by seed alone). The cluster's high watermark must not allow that; its
    /// tests keep check (c).
    #[test]
    fn workload_under_kill9_on_a_real_node_loses_no_acknowledged_record() {
        let kinds = vec![FaultKind::Kill, FaultKind::Pause, FaultKind::CutClients];
        let (verdict, context) = workload_on_a_real_node(kinds);
        for check in [Check::NoLostAcks, Check::NoDuplicates, Check::CommitsMonotonic] {
            assert!(verdict.report(check).unwrap().is_valid(), "{verdict}{context}");
        }
        if !verdict.report(Check::ReadsStable).unwrap().is_valid() {
            eprintln!("known single-node behaviour (see the doc comment):\n{verdict}");
        }
    }
}
