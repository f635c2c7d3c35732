//! `petset bench …`: measurements whose figures go into BENCHMARKS.md.

mod api;
mod pods;
mod statefulset;
mod stats;
mod store;

use crate::cli::{BenchArgs, BenchTarget};

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.target {
        BenchTarget::Store(args) => store::run(args).await,
        BenchTarget::Api(args) => api::run(args).await,
        BenchTarget::Statefulset(args) => statefulset::run(args).await,
        BenchTarget::Pods(args) => pods::run(args).await,
    }
}
