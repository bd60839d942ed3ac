//! TEMPORARY placeholder until the cluster crate's node lands.
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;

use broker::cluster::{ClusterControl, ClusterService, ClusterStart, LocalFuture};

struct Placeholder;

impl ClusterService for Placeholder {
    fn start(&self, _start: ClusterStart) -> LocalFuture<'static, Result<std::rc::Rc<dyn ClusterControl>, String>> {
        Box::pin(async { Err("cluster support is not built yet".to_owned()) })
    }
}

pub fn service(
    _node: u32,
    _listener: TcpListener,
    _advertised: String,
    _peers: BTreeMap<u32, String>,
) -> Arc<dyn ClusterService> {
    Arc::new(Placeholder)
}
