//! The `shardlog` binary: `shardlog serve` runs the broker; `topic`, `produce` and `consume`
//! are clients (see `cli/`).

mod cli;

/// jemalloc, not glibc's malloc: with many partitions every message is its own batch, and
/// glibc's free-list upkeep (`malloc_consolidate`, `unlink_chunk`) on the broker's DMA chunks
/// and the client's batch and request buffers was a fifth of the CPU (docs/benchmarks.md,
/// "Many partitions"). mimalloc was tried first and was far worse with the 1 MiB aligned
/// DMA buffers.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its start-up (a NUL-terminated C string; `_RJEM_MALLOC_CONF`
/// in the environment still overrides). Freed pages are kept for reuse rather than returned
/// to the OS after a decay time: purging and faulting them back in cost the broker ~5 % CPU
/// per message at 16 partitions (same-session A/B, docs/benchmarks.md), and the resident
/// size is bounded by the broker's own budgets (batch cache, unwritten bytes, request
/// memory), not by the allocator giving pages back.
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: &[u8] = b"dirty_decay_ms:-1,muzzy_decay_ms:-1\0";

fn main() {
    std::process::exit(cli::main());
}
