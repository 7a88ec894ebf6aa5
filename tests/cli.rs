//! The command line: `-t` checks a config, and a bad config stops streamgate
//! at start with exit status 2 and a message naming the key and the reason.

mod common;

use std::process::{Command, Output};

use common::binary;

const GOOD: &str = r#"
listen: ["127.0.0.1:3999"]
upstreams:
  app: { address: "127.0.0.1:8080" }
stream:
  api_key: key
  api_secret: "${TEST_SECRET:-a-test-secret}"
"#;

fn run_with(config: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("streamgate.yaml");
    std::fs::write(&path, config).unwrap();
    let mut command = Command::new(binary());
    command
        .args(args)
        .arg("-c")
        .arg(&path)
        .env_remove("TEST_SECRET");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run streamgate")
}

fn check(config: &str) -> Output {
    run_with(config, &["-t"], &[])
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_rejected(output: &Output, expected: &str) {
    assert_eq!(output.status.code(), Some(2), "stderr: {}", stderr(output));
    let message = stderr(output);
    assert!(
        message.contains(expected),
        "expected {expected:?} in:\n{message}"
    );
}

#[test]
fn good_config_passes_the_check() {
    let output = check(GOOD);
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("is valid"));
    // -t also repeats the start-up warnings.
    assert!(stderr(&output).contains("can mint a Stream token for ANY userId"));
}

#[test]
fn shipped_example_config_passes_the_check() {
    let output = Command::new(binary())
        .args([
            "-t",
            "-c",
            concat!(env!("CARGO_MANIFEST_DIR"), "/conf/streamgate.yaml"),
        ])
        .env_remove("STREAM_API_SECRET")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    assert!(
        stderr(&output).contains("DEVELOPMENT secret"),
        "the dev secret is announced loudly"
    );
}

/// One ready example per identity mode; each must pass `-t` as shipped, and
/// only the `none` example may warn that anyone can mint.
#[test]
fn every_shipped_config_passes_the_check() {
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/conf");
    let mut checked = 0;
    for entry in std::fs::read_dir(conf).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let output = Command::new(binary())
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("-t")
            .arg("-c")
            .arg(&path)
            .env_remove("STREAM_API_SECRET")
            .env_remove("JWKS_FILE")
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}: {}",
            path.display(),
            stderr(&output)
        );
        let open_minting = stderr(&output).contains("ANY userId");
        let is_identity_example = path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("identity-");
        assert_eq!(open_minting, !is_identity_example, "{}", path.display());
        checked += 1;
    }
    assert!(
        checked >= 4,
        "expected the default config and one per identity mode"
    );
}

#[test]
fn unknown_upstream_is_rejected() {
    let config = format!("{GOOD}routes:\n  - {{ match: {{ path_prefix: / }}, upstream: web }}\n");
    assert_rejected(
        &check(&config),
        "routes[0].upstream: unknown upstream \"web\" (defined: app)",
    );
}

#[test]
fn empty_upstreams_are_rejected() {
    let config = GOOD.replace(
        "upstreams:\n  app: { address: \"127.0.0.1:8080\" }",
        "upstreams: {}",
    );
    assert_rejected(
        &check(&config),
        "upstreams: at least one upstream is required",
    );
}

#[test]
fn empty_secret_is_rejected() {
    let config = GOOD.replace("${TEST_SECRET:-a-test-secret}", "${TEST_SECRET}");
    assert_rejected(
        &run_with(&config, &["-t"], &[("TEST_SECRET", "")]),
        "stream.api_secret",
    );
    assert_rejected(
        &run_with(&config, &["-t"], &[]),
        "stream.api_secret: environment variable TEST_SECRET is not set",
    );
    let literal = GOOD.replace("\"${TEST_SECRET:-a-test-secret}\"", "\"\"");
    assert_rejected(&check(&literal), "stream.api_secret: must not be empty");
}

/// A secret file is read by the running server and re-read when it changes
/// (issue: secret rotation), so an empty one at check time is a loud warning,
/// not a refusal: the server starts not ready and becomes ready once the file
/// holds a secret (see tests/operations.rs).
#[test]
fn empty_secret_file_is_announced() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("api_secret");
    std::fs::write(&secret, "\n").unwrap();
    let config = GOOD.replace(
        "api_secret: \"${TEST_SECRET:-a-test-secret}\"",
        &format!("api_secret_file: {}", secret.display()),
    );
    let output = check(&config);
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    assert!(
        stderr(&output).contains("stream.api_secret_file: ")
            && stderr(&output).contains("is empty")
    );
    assert!(stderr(&output).contains("stay not ready"));
}

#[test]
fn yaml_syntax_error_is_rejected_with_its_location() {
    assert_rejected(
        &check("listen: [\"127.0.0.1:1\"\nupstreams: {"),
        "invalid YAML",
    );
    assert_rejected(&check("listen: [\"127.0.0.1:1\"\nupstreams: {"), "line");
}

#[test]
fn every_error_is_listed_in_one_run() {
    let config = GOOD
        .replace("\"127.0.0.1:3999\"", "\"nowhere\"")
        .replace("api_key: key", "api_key: \"\"")
        + "tokens: { max_validity_seconds: 0 }\ncolour: blue\n";
    let output = check(&config);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    for expected in [
        "listen[0]: \"nowhere\" is not an IP:port address",
        "stream.api_key: must not be empty",
        "tokens.max_validity_seconds: must be at least 1",
        "colour: unknown section",
    ] {
        assert!(
            message.contains(expected),
            "{expected:?} missing from:\n{message}"
        );
    }
    assert_eq!(
        message
            .lines()
            .filter(|l| l.starts_with("streamgate: configuration error"))
            .count(),
        4
    );
}

#[test]
fn misspelled_key_is_named() {
    assert_rejected(
        &check(&GOOD.replace("address:", "adress:")),
        "upstreams.app.adress: unknown field `adress`",
    );
}

#[test]
fn missing_file_is_rejected() {
    let output = Command::new(binary())
        .args(["-t", "-c", "/nonexistent/streamgate.yaml"])
        .output()
        .unwrap();
    assert_rejected(&output, "cannot read /nonexistent/streamgate.yaml");
}

/// Without -t, a bad config stops streamgate before it listens, same status.
#[test]
fn bad_config_stops_the_server_at_start() {
    let config = GOOD.replace("api_key: key", "api_key: \"\"");
    let output = run_with(&config, &[], &[]);
    assert_rejected(&output, "stream.api_key: must not be empty");
}

/// An example config started from the repository root as `make run` starts
/// it, with `env` set (`None`: removed), its stderr kept.
struct Example {
    child: std::process::Child,
    logs: tempfile::NamedTempFile,
}

impl Example {
    fn start(config: &str, env: &[(&str, Option<String>)]) -> Example {
        let logs = tempfile::NamedTempFile::new().unwrap();
        let mut command = Command::new(binary());
        command
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["-c", config])
            .stdout(std::process::Stdio::null())
            .stderr(logs.reopen().unwrap());
        for (name, value) in env {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        Example {
            child: command.spawn().unwrap(),
            logs,
        }
    }

    /// Whether `port` accepts connections within 15 s.
    fn listens_on(&self, port: u16) -> bool {
        common::poll(std::time::Duration::from_secs(15), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .is_some()
    }

    /// Stops it; what it wrote on stderr.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read_to_string(self.logs.path()).unwrap()
    }
}

/// What `make run` starts: the example config as shipped, its listeners moved
/// by `LISTEN` / `ADMIN_LISTEN`, loopback only, dev credentials with a warning.
#[test]
fn the_example_config_runs_as_make_run_starts_it() {
    let (port, admin) = (common::free_port(), common::free_port());
    let example = Example::start(
        "conf/streamgate.yaml",
        &[
            ("LISTEN", Some(format!("127.0.0.1:{port}"))),
            ("ADMIN_LISTEN", Some(format!("127.0.0.1:{admin}"))),
            ("STREAM_API_KEY", None),
            ("STREAM_API_SECRET", None),
            ("APP_ADDRESS", None),
        ],
    );
    let answer = example.listens_on(port).then(|| {
        let mut client = common::RawClient::connect(port);
        client.send(
            "POST /api/tokens/user HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: 21\r\n\r\n{\"userId\":\"john_doe\"}",
        );
        client.response()
    });
    let stderr = example.stop();
    let answer = answer.unwrap_or_else(|| panic!("streamgate did not listen:\n{stderr}"));
    assert_eq!(answer.status, 200, "{}", answer.body_text());
    assert!(answer.body_text().contains("\"userId\":\"john_doe\""));
    assert!(stderr.contains("DEVELOPMENT secret"), "{stderr}");
    assert!(
        stderr.contains(&format!("anyone who can reach 127.0.0.1:{port}")),
        "{stderr}"
    );
}

/// The TLS + gRPC example as the README starts it (`make run
/// CONFIG=conf/tls-grpc.yaml`, then `curl --cacert conf/tls/dev.crt
/// https://localhost:3443/`): its development pair verifies for `localhost`,
/// curl gets HTTP/2 by ALPN, a token is minted over it, a gRPC call to the
/// absent gRPC app is told UNAVAILABLE in gRPC's form, and the development
/// pair is announced.
#[test]
fn the_tls_example_config_serves_as_the_readme_shows() {
    let [port, tls_port, admin] = [(); 3].map(|()| common::free_port());
    let example = Example::start(
        "conf/tls-grpc.yaml",
        &[
            ("LISTEN", Some(format!("127.0.0.1:{port}"))),
            ("TLS_LISTEN", Some(format!("127.0.0.1:{tls_port}"))),
            ("ADMIN_LISTEN", Some(format!("127.0.0.1:{admin}"))),
            ("APP_ADDRESS", Some("127.0.0.1:1".into())),
            ("GRPC_ADDRESS", Some("127.0.0.1:1".into())),
            ("TLS_CERT_FILE", None),
            ("TLS_KEY_FILE", None),
        ],
    );
    let resolve = format!("localhost:{tls_port}:127.0.0.1");
    let curl = |args: &[&str]| {
        let tls = ["--cacert", "conf/tls/dev.crt", "--resolve", &resolve];
        common::curl(&[&tls[..], args].concat())
    };
    let base = format!("https://localhost:{tls_port}");
    let answers = example.listens_on(tls_port).then(|| {
        [
            curl(&[&format!("{base}/")]),
            curl(&[
                "-H",
                "content-type: application/json",
                "-d",
                r#"{"userId":"john_doe"}"#,
                &format!("{base}/api/tokens/user"),
            ]),
            curl(
                &[
                    &common::GRPC_CALL[..],
                    &[&format!("{base}/helloworld.Greeter/SayHello")],
                ]
                .concat(),
            ),
        ]
    });
    let stderr = example.stop();
    let [root, token, grpc] =
        answers.unwrap_or_else(|| panic!("streamgate did not listen:\n{stderr}"));
    // The app is absent: the JSON 502, over HTTP/2 with a verified certificate.
    assert_eq!(
        (root.version.as_str(), root.status()),
        ("2", Some(502)),
        "{}",
        root.head
    );
    assert_eq!(
        (token.version.as_str(), token.status()),
        ("2", Some(200)),
        "{}",
        token.head
    );
    assert!(
        token.body.contains(r#""userId":"john_doe""#),
        "{}",
        token.body
    );
    assert_eq!(grpc.header("grpc-status"), Some("14"), "{}", grpc.head);
    assert_eq!(
        (grpc.version.as_str(), grpc.status()),
        ("2", Some(200)),
        "{}",
        grpc.head
    );
    assert!(stderr.contains("DEVELOPMENT certificate"), "{stderr}");
}

// ---- streamgate dev-jwt ------------------------------------------------------

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// `streamgate dev-jwt` with `args`, run from the repository root as README
/// runs it.
fn dev_jwt(args: &[&str]) -> Output {
    Command::new(binary())
        .current_dir(ROOT)
        .arg("dev-jwt")
        .args(args)
        .output()
        .expect("run streamgate dev-jwt")
}

/// The token on stdout, checked to be all that is there but its newline.
fn printed_token(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(output));
    assert_eq!(stderr(output), "", "nothing but the token is said");
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    let token = stdout
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("no final newline: {stdout:?}"));
    assert!(
        !token.contains(char::is_whitespace) && token.split('.').count() == 3,
        "{stdout:?}"
    );
    token.to_string()
}

/// A `jwt` key source holding the development key is announced by `-t` (a
/// start prints the same warnings), whatever the file is called; another key
/// is not.
#[test]
fn trusting_the_development_key_is_announced() {
    let dir = tempfile::tempdir().unwrap();
    let renamed = dir.path().join("idp.pub.pem");
    std::fs::copy(format!("{ROOT}/conf/dev-idp/dev-idp.pub.pem"), &renamed).unwrap();
    let fixtures = common::FIXTURES;
    for (source, development) in [
        (format!("jwks_file: {ROOT}/conf/example-jwks.json"), true),
        (format!("public_key_file: {}", renamed.display()), true),
        (format!("jwks_file: {fixtures}/idp-key-1.jwks.json"), false),
        (
            format!("public_key_file: {fixtures}/idp-key-1.pub.pem"),
            false,
        ),
    ] {
        let config = format!("{GOOD}identity:\n  mode: jwt\n  jwt: {{ {source} }}\n");
        let output = check(&config);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{source}: {}",
            stderr(&output)
        );
        let field = source.split(':').next().unwrap();
        let warned = stderr(&output).contains(&format!(
            "route POST /api/tokens/user accepts JWTs signed with the DEVELOPMENT key of \
             conf/dev-idp/ (its jwt.{field} holds that key's public half)"
        ));
        assert_eq!(warned, development, "{source}: {}", stderr(&output));
        assert!(!stderr(&output).contains("ANY userId"), "{source}");
    }
}

#[test]
fn dev_jwt_prints_a_token_and_says_it_is_for_development_only() {
    let token = printed_token(&dev_jwt(&[
        "--sub",
        "alice",
        "--roles",
        "admin,moderator",
        "--expires-in",
        "10m",
        "--issuer",
        "https://idp.example/",
        "--audience",
        "other",
        "--kid",
        "k1",
    ]));
    // What each option sets (the signature and the defaults: src/dev_jwt/tests.rs).
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.kid.as_deref(), Some("k1"));
    let claims = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(&token)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["roles"], serde_json::json!(["admin", "moderator"]));
    assert_eq!(claims["iss"], "https://idp.example/");
    assert_eq!(claims["aud"], "other");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        600
    );
    let help = dev_jwt(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("For development only") && help.contains("DEVELOPMENT key"),
        "{help}"
    );
    let top = Command::new(binary()).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&top.stdout).contains("dev-jwt"));
}

#[test]
fn dev_jwt_says_which_key_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = Command::new(binary())
        .current_dir(dir.path())
        .args(["dev-jwt", "--sub", "alice"])
        .output()
        .unwrap();
    assert_eq!(elsewhere.status.code(), Some(1));
    assert!(elsewhere.stdout.is_empty());
    assert!(
        stderr(&elsewhere)
            .starts_with("streamgate dev-jwt: cannot read conf/dev-idp/dev-idp.key.pem"),
        "{}",
        stderr(&elsewhere)
    );
    let public = dev_jwt(&["--sub", "alice", "--key", "conf/dev-idp/dev-idp.pub.pem"]);
    assert_eq!(public.status.code(), Some(1));
    assert!(
        stderr(&public).contains("conf/dev-idp/dev-idp.pub.pem: not an RSA private key in PEM"),
        "{}",
        stderr(&public)
    );
}

/// The server's options and `dev-jwt` do not mix: refused (as a usage error,
/// status 2) rather than one of them silently ignored.
#[test]
fn server_options_and_dev_jwt_are_refused_together() {
    for args in [
        &["-t", "dev-jwt", "--sub", "alice"][..],
        &["-c", "conf/identity-jwt.yaml", "dev-jwt", "--sub", "alice"],
    ] {
        let output = Command::new(binary())
            .current_dir(ROOT)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}
