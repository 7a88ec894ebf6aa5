//! The operator's commands beside the server: `token decode|verify`,
//! `--version` and `--help`, and the pid file's life (written at start,
//! removed at a normal exit, left alone by `-t`, by a process that fails to
//! start and by an upgraded-away process), with `make reload`'s check.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use serde_json::json;

fn closed_upstream() -> std::net::SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// Runs the binary with `args`, `env` added and `STREAM_API_SECRET`
/// removed unless given, feeding `stdin`.
fn streamgate(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut command = Command::new(binary());
    command
        .args(args)
        .env_remove("STREAM_API_SECRET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("spawn streamgate");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("run streamgate")
}

fn out(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn err(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        out(output),
        err(output)
    );
    assert!(!err(output).contains("panicked"), "{}", err(output));
}

/// A token streamgate itself minted for `alice`.
async fn minted_token() -> String {
    let gate = Streamgate::start(&default_config(closed_upstream()));
    let (status, answer, _) = mint_user(&gate, json!({"userId": "alice"}), &[]).await;
    assert_eq!(status, 200, "{answer}");
    token_in(&answer).to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn decode_shows_a_minted_tokens_claims_and_expiry_in_words() {
    let token = minted_token().await;
    for (args, stdin) in [
        (["token", "decode", token.as_str()], ""),
        (["token", "decode", "-"], &*format!("{token}\n")),
    ] {
        let output = streamgate(&args, &[], stdin);
        assert_exit(&output, 0);
        let text = out(&output);
        assert!(text.starts_with("NOT VERIFIED"), "{text}");
        assert!(text.contains(r#""user_id": "alice""#), "{text}");
        assert!(text.contains(r#""alg": "HS256""#), "{text}");
        assert!(text.contains("(expires in "), "{text}");
        assert!(text.contains("exp: 20"), "RFC 3339 date: {text}");
    }
}

#[test]
fn decode_says_what_is_wrong_with_garbage() {
    for (token, stdin, expected) in [
        ("garbage", "", "expected 3 parts"),
        ("a.b.c", "", "header (part 1) is not base64url"),
        ("eyJ9.e30.c2ln", "", "header (part 1) is not JSON"),
        ("-", "", "the token is empty"),
        ("-", "x.y", "expected 3 parts"),
    ] {
        let output = streamgate(&["token", "decode", token], &[], stdin);
        assert_exit(&output, 1);
        assert!(err(&output).contains(expected), "{token}: {}", err(&output));
        assert!(out(&output).is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_checks_a_minted_token_with_the_api_secret() {
    let token = minted_token().await;
    let with_secret = [("STREAM_API_SECRET", API_SECRET)];
    let output = streamgate(&["token", "verify", &token], &with_secret, "");
    assert_exit(&output, 0);
    assert!(out(&output).starts_with("valid:"), "{}", out(&output));
    assert!(out(&output).contains(r#""user_id": "alice""#));

    let output = streamgate(&["token", "verify", "-"], &with_secret, &token);
    assert_exit(&output, 0);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, format!("{API_SECRET}\n")).unwrap();
    let file = file.to_str().unwrap();
    // The file wins over the environment.
    let wrong_env = [("STREAM_API_SECRET", "another-secret")];
    let output = streamgate(
        &["token", "verify", "--secret-file", file, "-"],
        &wrong_env,
        &token,
    );
    assert_exit(&output, 0);

    let output = streamgate(&["token", "verify", &token], &wrong_env, "");
    assert_exit(&output, 1);
    assert!(
        out(&output).starts_with("invalid: signature"),
        "{}",
        out(&output)
    );
}

#[test]
fn verify_says_why_a_token_is_invalid() {
    let with_secret = [("STREAM_API_SECRET", API_SECRET)];
    let expired = hs256(
        json!({"user_id": "alice", "exp": now() - 3 * 3600}),
        API_SECRET,
    );
    let output = streamgate(&["token", "verify", &expired], &with_secret, "");
    assert_exit(&output, 1);
    assert!(
        out(&output).contains("invalid: expired"),
        "{}",
        out(&output)
    );
    assert!(
        out(&output).contains("(expired 3h ago)"),
        "{}",
        out(&output)
    );

    let no_exp = hs256(json!({"user_id": "alice"}), API_SECRET);
    let output = streamgate(&["token", "verify", &no_exp], &with_secret, "");
    assert_exit(&output, 1);
    assert!(
        out(&output).contains("invalid: missing exp"),
        "{}",
        out(&output)
    );

    let output = streamgate(&["token", "verify", "garbage"], &with_secret, "");
    assert_exit(&output, 1);
    assert!(
        out(&output).contains("invalid: malformed"),
        "{}",
        out(&output)
    );
}

#[test]
fn verify_takes_no_secret_from_an_argument() {
    let token = hs256(json!({"user_id": "alice", "exp": now() + 60}), API_SECRET);
    for flag in [
        vec!["--secret", API_SECRET],
        vec![&*format!("--secret={API_SECRET}")],
    ] {
        let mut args = vec!["token", "verify"];
        args.extend(flag);
        args.push(&token);
        let output = streamgate(&args, &[], "");
        assert_exit(&output, 2);
        assert!(
            err(&output).contains("unexpected argument '--secret"),
            "{}",
            err(&output)
        );
    }
    let output = streamgate(&["token", "verify", &token], &[], "");
    assert_exit(&output, 2);
    assert!(
        err(&output).contains("no API secret: set STREAM_API_SECRET"),
        "{}",
        err(&output)
    );
    let missing = [
        "token",
        "verify",
        "--secret-file",
        "/nonexistent/secret",
        &token,
    ];
    let output = streamgate(&missing, &[], "");
    assert_exit(&output, 2);
    assert!(
        err(&output).contains("cannot read /nonexistent/secret"),
        "{}",
        err(&output)
    );
}

#[test]
fn version_names_the_commit_and_the_build_date() {
    let output = streamgate(&["--version"], &[], "");
    assert_exit(&output, 0);
    let text = out(&output);
    let rest = text
        .strip_prefix(&format!(
            "streamgate {} (commit ",
            env!("CARGO_PKG_VERSION")
        ))
        .unwrap_or_else(|| panic!("{text}"));
    let (commit, rest) = rest
        .split_once(", built ")
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{text}"
    );
    let date = rest.trim_end().trim_end_matches(')');
    assert!(humantime::parse_rfc3339(date).is_ok(), "{text}");
}

#[test]
fn help_names_every_variable_the_shipped_configs_read() {
    let output = streamgate(&["--help"], &[], "");
    assert_exit(&output, 0);
    let help = out(&output);
    let mut names = vec!["RUST_LOG".to_owned(), "README".to_owned()];
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/conf");
    for entry in std::fs::read_dir(conf).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for piece in text.split("${").skip(1) {
            let name: String = piece
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            names.push(name);
        }
    }
    assert!(names.len() > 8, "{names:?}");
    for name in names {
        assert!(
            help.contains(&name),
            "--help does not mention {name}:\n{help}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn build_info_carries_commit_and_build_date() {
    let gate = Streamgate::start(&default_config(closed_upstream()));
    let text = get(gate.admin_url("/metrics")).await.text().await.unwrap();
    let expected = format!(
        "streamgate_build_info{{build_date=\"{}\",commit=\"{}\",version=\"{}\"}} 1",
        streamgate::version::BUILD_DATE,
        streamgate::version::COMMIT,
        env!("CARGO_PKG_VERSION"),
    );
    assert!(text.contains(&expected), "{expected} not in:\n{text}");
}

// ---- the pid file ---------------------------------------------------------------

fn pid_in(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn pid_file(gate: &Streamgate) -> std::path::PathBuf {
    gate.dir().join("streamgate.pid")
}

#[test]
fn the_pid_file_is_removed_at_a_normal_exit() {
    for signal in ["TERM", "INT"] {
        let mut gate = Streamgate::start(&default_config(closed_upstream()));
        let file = pid_file(&gate);
        assert_eq!(
            pid_in(&file),
            Some(gate.pid()),
            "{signal}: written at start"
        );
        gate.signal(signal);
        assert_eq!(
            gate.wait_exit(Duration::from_secs(20)),
            Some(Some(0)),
            "{signal}"
        );
        assert!(!file.exists(), "{signal}: the pid file is still there");
    }
}

#[test]
fn check_runs_and_failed_starts_leave_the_pid_file_alone() {
    let gate = Streamgate::start(&default_config(closed_upstream()));
    let file = pid_file(&gate);
    let config = gate.dir().join("streamgate.yaml");
    let check = Command::new(binary())
        .arg("-t")
        .arg("-c")
        .arg(&config)
        .output()
        .unwrap();
    assert_exit(&check, 0);
    // The same config again: its ports are taken, so it cannot start.
    let mut second = Command::new(binary())
        .arg("-c")
        .arg(&config)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let exited = poll(Duration::from_secs(15), || second.try_wait().ok().flatten());
    if exited.is_none() {
        let _ = second.kill();
        let _ = second.wait();
    }
    assert!(
        exited.is_some_and(|status| !status.success()),
        "a second process on the same ports started: {exited:?}"
    );
    assert_eq!(pid_in(&file), Some(gate.pid()));
}

#[test]
fn after_an_upgrade_the_pid_file_names_the_new_process() {
    let config = default_config(closed_upstream());
    let mut old = Streamgate::start(&config);
    let file = pid_file(&old);
    let mut new = old.start_upgrade(&config);
    old.signal("QUIT");
    assert!(
        old.wait_exit(Duration::from_secs(20)).is_some(),
        "the old process did not exit"
    );
    assert_eq!(
        pid_in(&file),
        Some(new.pid()),
        "the old process removed the new pid"
    );
    new.signal("TERM");
    assert_eq!(new.wait_exit(Duration::from_secs(20)), Some(Some(0)));
    assert!(!file.exists());
}

/// `make reload` signals only a running streamgate: a stale pid file may
/// name any process by now.
#[test]
fn make_reload_refuses_a_pid_that_is_not_streamgate() {
    if Command::new("make").arg("--version").output().is_err() {
        eprintln!("make is not installed: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("streamgate.yaml");
    let filled = default_config(closed_upstream())
        .replace("{port}", &free_port().to_string())
        .replace("{admin_port}", &free_port().to_string())
        .replace("{dir}", dir.path().to_str().unwrap());
    std::fs::write(&config, filled).unwrap();
    let mut bystander = Command::new("sleep").arg("60").spawn().unwrap();
    let pids = dir.path().join("streamgate.pid");
    std::fs::write(&pids, format!("{}\n", bystander.id())).unwrap();
    let output = Command::new("make")
        .args(["-s", "-C", env!("CARGO_MANIFEST_DIR"), "reload"])
        .arg(format!("BIN={}", binary().display()))
        .arg(format!("CONFIG={}", config.display()))
        .arg(format!("PID_FILE={}", pids.display()))
        .arg(format!(
            "UPGRADE_SOCK={}",
            dir.path().join("upgrade.sock").display()
        ))
        .output()
        .unwrap();
    let still_running = bystander.try_wait().unwrap().is_none();
    let _ = bystander.kill();
    let _ = bystander.wait();
    assert_ne!(output.status.code(), Some(0));
    assert!(
        out(&output).contains("is not a running streamgate"),
        "{}{}",
        out(&output),
        err(&output)
    );
    assert!(still_running, "make reload signalled an unrelated process");
}

/// `make test` on a toolchain without rustup and without rustfmt says what
/// is missing instead of failing on `rustup: not found`; `make run`'s
/// prerequisites do not ask for either.
#[test]
fn make_says_what_is_missing_on_a_toolchain_without_rustup() {
    if Command::new("make").arg("--version").output().is_err() {
        eprintln!("make is not installed: skipped");
        return;
    }
    // A cargo that has no fmt or clippy subcommand, and no rustup on PATH.
    let bin = tempfile::tempdir().unwrap();
    let cargo = bin.path().join("cargo");
    std::fs::write(
        &cargo,
        "#!/bin/sh\necho \"error: no such command: $1\" >&2\nexit 101\n",
    )
    .unwrap();
    std::fs::set_permissions(&cargo, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", bin.path().display());
    let make = |target: &str| {
        Command::new("make")
            .args(["-s", "-C", env!("CARGO_MANIFEST_DIR"), target])
            .env("PATH", &path)
            .output()
            .unwrap()
    };
    let lint = make("lint-deps");
    assert_ne!(lint.status.code(), Some(0));
    let said = format!("{}{}", out(&lint), err(&lint));
    assert!(said.contains("make test needs rustfmt"), "{said}");
    assert!(!said.contains("rustup: not found"), "{said}");
    // `run`'s prerequisites are cmake and curl only (both present here).
    let deps = make("deps");
    assert_exit(&deps, 0);
    // `cargo test` names its own cargo in CARGO, which a shell does not.
    let run_plan = Command::new("make")
        .args(["-n", "-C", env!("CARGO_MANIFEST_DIR"), "run"])
        .env_remove("CARGO")
        .output()
        .unwrap();
    assert_exit(&run_plan, 0);
    for word in ["rustup", "fmt", "clippy"] {
        assert!(
            !out(&run_plan).contains(word),
            "make run would need {word}:\n{}",
            out(&run_plan)
        );
    }
}
