use clap::Parser;
use rubberduck::config::{Cli, Command, ServeArgs};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    // `loadtest` and `bench` build runtimes of their own, which cannot start inside another.
    match cli.command {
        Some(Command::Serve(args)) => serve(&args),
        Some(Command::Loadtest(args)) => rubberduck::loadtest::main(args),
        Some(Command::Bench(args)) => rubberduck::bench::main(&args),
        None => serve(&cli.serve),
    }
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
