//! The `streamgate` command: parse arguments, load the configuration, run.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use streamgate::config::Config;

/// A Pingora sidecar that mints GetStream.io user tokens and proxies everything else.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Configuration file.
    #[arg(
        short = 'c',
        long = "conf",
        default_value = "/etc/streamgate/streamgate.yaml"
    )]
    config: PathBuf,
    /// Check the configuration and exit: 0 when valid, 2 when not.
    #[arg(short = 't', long = "test")]
    test: bool,
    /// Take over the listening sockets of a running streamgate (send it SIGQUIT
    /// after starting this one) instead of binding them: a reload without a
    /// refused connection.
    #[arg(short = 'u', long = "upgrade")]
    upgrade: bool,
}

/// Exit status for a configuration that cannot be used, as nginx -t does.
const EXIT_BAD_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    streamgate::telemetry::process_log::init();

    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(errors) => {
            for error in &errors.0 {
                eprintln!(
                    "streamgate: configuration error in {}: {error}",
                    cli.config.display()
                );
            }
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    for warning in config.warnings() {
        log::warn!("{warning}");
    }
    if cli.test {
        println!(
            "streamgate: configuration {} is valid",
            cli.config.display()
        );
        return ExitCode::SUCCESS;
    }
    streamgate::server::run(config, cli.upgrade)
}
