//! Stand-alone entry point for the benchmark (the same as `berth bench`).

use clap::Parser;

#[derive(Parser)]
#[command(name = "berth-bench", about = "Benchmark an OCI registry")]
struct Cli {
    #[command(flatten)]
    args: berth_bench::BenchArgs,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    berth_bench::run(Cli::parse().args).await
}
