//! shardlog's cluster: the metadata log agreed through openraft (brokers, topics, replica
//! assignments, leaders, epochs, ISR, committed group offsets — `broker::cluster::metadata`),
//! the controller that fences silent brokers and balances leadership, and the node-to-node
//! RPC they use. It plugs into the broker through `broker::cluster::ClusterService`.

pub mod runtime;
