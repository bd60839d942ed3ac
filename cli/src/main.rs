//! The `shardlog` binary: `shardlog serve` runs the broker; `topic`, `produce` and `consume`
//! are clients (see `cli/`).

mod cli;

fn main() {
    std::process::exit(cli::main());
}
