use clap::Parser;
use rubberduck::config::{Cli, Command, ServeArgs};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let small_pages = keep_memory_pages_small();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if let Err(e) = small_pages {
        log::debug!("transparent huge pages stay on: {e}");
    }
    let cli = Cli::parse();
    // `loadtest` and `bench` build runtimes of their own, which cannot start inside another.
    match cli.command {
        Some(Command::Serve(args)) => serve(&args),
        Some(Command::Loadtest(args)) => rubberduck::loadtest::main(args),
        Some(Command::Bench(args)) => rubberduck::bench::main(&args),
        Some(Command::Fixtures(args)) => rubberduck::fixtures::cli::main(&args),
        Some(Command::Check(args)) => rubberduck::config::check(&args),
        None => serve(&cli.serve),
    }
}

/// Every worker thread's heap holding a 2 MiB transparent huge page it barely uses made ten idle
/// proxies take 78 MiB instead of 28, for no throughput (`rubberduck bench` measured the same
/// without). mimalloc is built not to ask for them (its `no_thp` feature); this keeps kernels that
/// hand them out unasked (THP "always") from doing so. Called first, before much is allocated; the
/// setting is the process's, and children inherit it.
fn keep_memory_pages_small() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    rustix::thread::disable_transparent_huge_pages(true)?;
    Ok(())
}

fn serve(args: &ServeArgs) -> std::process::ExitCode {
    actix_web::rt::System::new().block_on(run_server(args))
}

async fn run_server(args: &ServeArgs) -> std::process::ExitCode {
    let running = match rubberduck::app::start(args).await {
        Ok(running) => running,
        Err(e) => {
            log::error!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    wait_for_shutdown_signal().await;
    log::info!("shutting down: stopping proxies gracefully");
    running.shutdown().await;
    std::process::ExitCode::SUCCESS
}

async fn wait_for_shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(e) => {
                log::warn!("cannot listen for SIGTERM ({e}); only Ctrl-C stops the server");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
