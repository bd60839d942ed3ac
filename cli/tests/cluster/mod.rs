//! The cluster test harness. So far: the fault-injecting proxy ([`proxy`]) that sits in front
//! of every port of every node, and a Jepsen-style [`history`] with its [`checker`].
#![allow(dead_code)] // Each test file uses a different subset.
#![allow(clippy::unwrap_used)]

pub mod checker;
pub mod history;
pub mod proxy;

pub use proxy::NodeId;
