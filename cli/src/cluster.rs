//! The `cluster` crate's node for `serve --cluster-listen`: Raft for the metadata and the
//! controller, on the coordinator shard (see the cluster crate).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;

use broker::cluster::ClusterService;
use cluster::{ClusterConfig, ClusterNodeService};

/// This node's part of the cluster: `listener` is its bound cluster port, `advertised` its
/// cluster address as the others reach it, `peers` the voters.
pub fn service(
    node: u32,
    listener: TcpListener,
    advertised: String,
    peers: BTreeMap<u32, String>,
) -> Arc<dyn ClusterService> {
    Arc::new(ClusterNodeService::new(ClusterConfig::new(node, listener, advertised, peers)))
}
