//! `petset`: the binary and the only composition root. It reads the command line and the
//! environment, installs logging, picks the implementations and wires them together.

mod agent;
mod bench;
mod cli;
mod cluster;
mod datadir;
mod failover;
mod image;
mod in_cluster;
mod kubeconfig;
mod local_cluster;
mod node_role;
mod probe;
mod server;
mod server_endpoints;
mod token;
mod up;

use std::process::ExitCode;

use clap::Parser;

// The API server and controllers allocate many small, short-lived JSON values; glibc's malloc
// spent about a third of the CPU of `petset bench statefulset` in allocation and consolidation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // A container's keeper (`petset_runtime::shim`), which the node starts once per container:
    // no logging, no async runtime, nothing but the copy of its output.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(petset_runtime::shim::SUBCOMMAND) {
        return petset_runtime::shim::main(&args[2..]);
    }
    let cli = cli::Cli::parse();
    install_logging();
    // The watchdog runs before any async runtime exists: it needs none, and so its descriptors
    // are only its own lock and the standard three, and no idle worker threads live as long.
    if let cli::Command::FenceWatchdog(args) = &cli.command {
        return exit_code(node_role::run_fence_watchdog(args));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            cli::Command::Up(args) => up::run(args).await,
            cli::Command::Server(args) => server::run(args).await,
            cli::Command::Agent(args) => agent::run(args).await,
            cli::Command::Token(args) => token::run(args).await,
            cli::Command::Kubeconfig(args) => kubeconfig::run(args),
            cli::Command::InCluster => in_cluster::run().await,
            cli::Command::Bench(args) => bench::run(args).await,
            cli::Command::Image(args) => image::run(args),
            cli::Command::Cluster(args) => match args.action {
                local_cluster::ClusterAction::Up(args) => local_cluster::run(args).await,
                local_cluster::ClusterAction::Down(args) => local_cluster::down(args).await,
            },
            cli::Command::Probe(args) => probe::run(args),
            // Run above, before the runtime; the same call here would do the same.
            cli::Command::FenceWatchdog(args) => node_role::run_fence_watchdog(&args),
        }
    });
    exit_code(outcome)
}

fn exit_code(outcome: anyhow::Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr; `RUST_LOG` overrides the default `info`.
fn install_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
