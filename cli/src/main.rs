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

fn main() {
    std::process::exit(cli::main());
}
