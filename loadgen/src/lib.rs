//! shardlog load generator. The load-generator issue fills this crate; until it lands, the
//! README's main command runs the engine benchmark in `benches/`.
