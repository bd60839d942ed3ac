//! shardlog's formats, with no runtime: the Kafka RecordBatch v2 codec (`batch`) the log
//! stores, replicates and serves, its bounds (`limits`), and the typed ids (`ids`) the engine
//! and the broker pass around. No I/O and no glommio here, so clients, tools and fuzzers can
//! use it on any executor.

pub mod batch;
pub mod ids;
pub mod limits;
