//! Networking shared by every protocol: listeners (`listen.rs`), budgeted request framing
//! (`frame.rs`), and the connection pipeline — concurrent requests, in-order answers, append
//! turns (`pipeline.rs`). A protocol adapter supplies only decode and serve (`Protocol`).

pub mod frame;
pub mod listen;
pub mod pipeline;

pub use frame::Close;
pub use listen::{bind_exclusive, bind_per_shard, bind_shared, into_glommio, ListenError};
pub use pipeline::{serve_connection, Answer, Decoded, Protocol};
