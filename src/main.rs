//! The `streamgate` command: parse arguments, load the configuration, run;
//! or, as `streamgate dev-jwt`, print a test JWT for trying `jwt` mode; or,
//! as `streamgate token decode|verify`, look inside a token.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use streamgate::config::Config;

/// A Pingora sidecar that mints GetStream.io user tokens and proxies everything else.
// Without a subcommand it is the server, as it always was; the server's
// options with a subcommand are refused rather than silently ignored.
#[derive(Parser)]
#[command(
    version = streamgate::version::LONG,
    after_help = ENVIRONMENT,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
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

#[derive(Subcommand)]
enum Command {
    /// For development only: print a test JWT signed with the DEVELOPMENT key
    ///
    /// The key is the throwaway one in conf/dev-idp/, whose public half
    /// conf/identity-jwt.yaml trusts (conf/example-jwks.json), so that jwt mode
    /// can be tried without an identity provider. Its private half is public:
    /// never trust it in a deployment.
    DevJwt(streamgate::dev_jwt::Args),
    /// Look inside a token: `decode` any JWT (nothing verified), `verify` a
    /// Stream token with the API secret
    Token(streamgate::cli::token::Args),
    /// Print the JSON Schema of the configuration file
    ///
    /// The same document as conf/streamgate.schema.json, for editors
    /// (`# yaml-language-server: $schema=…`) and CI validators.
    Schema,
}

/// The environment `--help` describes: what the shipped configurations in
/// conf/ read through `${NAME:-default}` (a test keeps the list complete),
/// and the log filter.
const ENVIRONMENT: &str = "\
Environment (read by the shipped configurations in conf/ as ${NAME:-default}):
  STREAM_API_KEY, STREAM_API_SECRET   Stream credentials (the defaults are for development only)
  APP_ADDRESS                         the app streamgate proxies to (127.0.0.1:8080)
  LISTEN, ADMIN_LISTEN                proxy and admin listeners (127.0.0.1:3000, 127.0.0.1:9901)
  JWKS_FILE                           identity-jwt.yaml: the identity provider's key set
  GRPC_ADDRESS, TLS_LISTEN,           tls-grpc.yaml: gRPC app, TLS listener and its
  TLS_CERT_FILE, TLS_KEY_FILE           certificate and key
  PID_FILE, UPGRADE_SOCK              streamgate.yaml: server.pid_file, server.upgrade_sock
                                        (/tmp/streamgate.pid, /tmp/streamgate_upgrade.sock;
                                        `make reload` reads the same two variables)
  RUST_LOG                            process log filter (info by default; debug, warn, ...)
A configuration can read any variable the same way; a relative file path in it (these
variables' too) is read from the configuration file's directory. Documentation: README.md
at the root of the source tree (quick start, configuration reference, operations).";

/// `streamgate schema`: the document, pretty-printed, with a final newline.
fn print_schema() -> ExitCode {
    match serde_json::to_string_pretty(&streamgate::config::schema()) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("streamgate: cannot print the schema: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Exit status for a configuration that cannot be used, as nginx -t does.
const EXIT_BAD_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::DevJwt(args)) => return streamgate::dev_jwt::run(args),
        Some(Command::Token(args)) => return streamgate::cli::token::run(args),
        Some(Command::Schema) => return print_schema(),
        None => {}
    }
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
