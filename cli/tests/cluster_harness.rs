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

/// Nothing arrives within `SILENCE`.
fn is_silent(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(SILENCE)).unwrap();
    let mut byte = [0u8; 1];
    let silent = matches!(stream.read(&mut byte), Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut));
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
    assert!(is_closed(&mut connect_as(Peer::Node(1), fronts[1])));
    assert!(is_closed(&mut connect_as(Peer::Node(2), fronts[0])));
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
    assert!(is_closed(&mut connect_as(Peer::Node(1), fronts[2])));
    assert!(is_closed(&mut connect_as(Peer::Node(2), fronts[2])));
    assert!(is_closed(&mut connect_as(Peer::Node(3), fronts[0])));
    assert!(is_closed(&mut connect_as(Peer::Node(3), fronts[1])));
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
    assert!(is_closed(&mut connect_as(Peer::Client, fronts[0])));
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
    assert!(is_closed(&mut connect_as(Peer::Client, fronts[0])));
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
    assert!(is_closed(&mut connect_as(Peer::Client, front)));
    assert_eq!(proxy.stats().upstream_failed, 1);
}
