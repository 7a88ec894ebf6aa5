//! `streamgate token decode|verify`: look inside a token without
//! third-party tools.
//!
//! `decode` reads any JWT and verifies nothing; `verify` checks a Stream
//! token (HS256) with the API secret from `STREAM_API_SECRET` or
//! `--secret-file`. There is deliberately no `--secret` option: a secret in
//! an argument lands in shell history and in every `ps` listing. The token
//! itself may be `-`, read from stdin, for the same reason.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{Map, Value};

use super::inspect::{self, Decoded};

/// The environment variable `verify` reads the API secret from, as the
/// shipped configurations do.
pub const SECRET_ENV: &str = "STREAM_API_SECRET";

/// Exit status when the command line itself cannot be used (no secret, an
/// unreadable file), as clap's own usage errors.
const EXIT_USAGE: u8 = 2;

/// The arguments of `streamgate token`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print a JWT's header and claims WITHOUT verifying it, with iat/nbf/exp in words
    ///
    /// Any JWT is read; nothing about it is checked (use `token verify` for
    /// that). Exit status 1 when the text is not a JWT.
    Decode {
        /// The JWT, or `-` to read it from stdin (keeps it out of shell history).
        #[arg(value_name = "TOKEN")]
        token: String,
    },
    /// Verify a Stream token (HS256) with the API secret
    ///
    /// The secret is read from STREAM_API_SECRET, or from --secret-file
    /// (which wins), never from an argument. Exit status: 0 valid, 1 invalid
    /// (the reason is printed), 2 no usable secret.
    Verify {
        /// The token, or `-` to read it from stdin.
        #[arg(value_name = "TOKEN")]
        token: String,
        /// A file holding the API secret (trailing newlines ignored, as for
        /// stream.api_secret_file).
        #[arg(long, value_name = "FILE")]
        secret_file: Option<PathBuf>,
    },
}

/// Runs `streamgate token …`: the result on stdout, problems on stderr.
pub fn run(args: &Args) -> ExitCode {
    let now = jsonwebtoken::get_current_timestamp();
    match &args.command {
        Command::Decode { token } => {
            let decoded = read_token(token)
                .and_then(|token| inspect::decode(&token).map_err(|e| e.to_string()));
            match decoded {
                Ok(decoded) => {
                    print!("{}", decode_report(&decoded, now));
                    ExitCode::SUCCESS
                }
                Err(reason) => {
                    eprintln!("streamgate token decode: {reason}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Verify { token, secret_file } => {
            let secret = match secret(secret_file.as_ref()) {
                Ok(secret) => secret,
                Err(reason) => {
                    eprintln!("streamgate token verify: {reason}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            let token = match read_token(token) {
                Ok(token) => token,
                Err(reason) => {
                    eprintln!("streamgate token verify: {reason}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            match inspect::verify(&token, &secret, now) {
                Ok(claims) => {
                    print!("{}", valid_report(&claims, now));
                    ExitCode::SUCCESS
                }
                Err(reason) => {
                    println!("invalid: {reason}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The token from its argument, or from stdin for `-`; surrounding
/// whitespace (a pasted newline) is dropped.
fn read_token(argument: &str) -> Result<String, String> {
    let text = if argument == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read the token from stdin: {e}"))?;
        text
    } else {
        argument.to_owned()
    };
    let token = text.trim();
    if token.is_empty() {
        return Err("the token is empty".into());
    }
    Ok(token.to_owned())
}

/// The API secret: `--secret-file` when given, else `STREAM_API_SECRET`.
fn secret(file: Option<&PathBuf>) -> Result<Vec<u8>, String> {
    if let Some(path) = file {
        return crate::reload::read_secret(path);
    }
    match std::env::var_os(SECRET_ENV) {
        Some(value) if !value.is_empty() => Ok(value.into_encoded_bytes()),
        _ => Err(format!(
            "no API secret: set {SECRET_ENV} or pass --secret-file FILE \
             (there is no option taking the secret itself)"
        )),
    }
}

/// What `decode` prints: the warning first, then header, claims and times.
pub fn decode_report(decoded: &Decoded, now: u64) -> String {
    let mut out = String::from(
        "NOT VERIFIED: decoded only; the signature and claims were not checked \
         (streamgate token verify checks a Stream token)\n",
    );
    out.push_str(&format!("header: {}\n", pretty(&decoded.header)));
    out.push_str(&format!("claims: {}\n", pretty(&decoded.claims)));
    for line in inspect::time_lines(&decoded.claims, now) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// What `verify` prints for a valid token.
pub fn valid_report(claims: &Map<String, Value>, now: u64) -> String {
    let mut out = String::from("valid: HS256 signature matches the API secret; not expired\n");
    out.push_str(&format!("claims: {}\n", pretty(claims)));
    for line in inspect::time_lines(claims, now) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn pretty(object: &Map<String, Value>) -> String {
    // Serializing a map of JSON values cannot fail; the fallback keeps it total.
    serde_json::to_string_pretty(object).unwrap_or_else(|_| format!("{object:?}"))
}
