//! Every command README.md shows, exercised. The commands are read from
//! README.md itself: each line of its `sh` blocks, and each command quoted in
//! its prose. The tests here run them as written, changing only what a test
//! must: free loopback ports, temporary files for secrets and the pid file,
//! and `make`'s build step. `make run` and `make reload` run with `CARGO`
//! and `BIN` given to make: the binary is the one `cargo test` built, and
//! cargo's invocation is recorded and checked instead of run, because
//! `cargo build` outside `cargo test` resolves other dependency features and
//! would rebuild a third of the tree (and a release build takes 8 minutes).
//! The rest are named in [`ELSEWHERE`] with the test that runs them, or in
//! [`NOT_RUN`] with the reason. A command added to README without either
//! fails `every_readme_command_is_exercised`.

mod common;

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// README commands run by another test or script: the command, the file that
/// runs it, and text of that file that does.
const ELSEWHERE: &[(&str, &str, &str)] = &[
    ("make test", ".ci/run", "make test"),
    (
        "make demo",
        "tests/demo.rs",
        "fn the_demo_runs_until_ctrl_c_and_stops_what_it_started",
    ),
    (
        "make demo DEMO_CHECK=1",
        "tests/demo.rs",
        "fn the_demo_check_runs_every_command_it_prints",
    ),
    (
        "make deploy-check",
        "Makefile",
        "$(MAKE) --no-print-directory deploy-check",
    ),
    (
        "make contract-check",
        "Makefile",
        "$(MAKE) --no-print-directory contract-check",
    ),
    (
        "streamgate schema > streamgate.schema.json",
        "tests/contracts.rs",
        "fn the_checked_in_schema_is_what_the_code_derives",
    ),
    (
        "check-jsonschema --schemafile streamgate.schema.json streamgate.yaml",
        "tests/contract/check.py",
        "\"--schemafile\", str(SCHEMA)",
    ),
    (
        "curl -s http://127.0.0.1:9901/openapi.json > openapi.json",
        "tests/contracts.rs",
        "fn openapi_json_describes_the_token_routes_as_configured",
    ),
    (
        "schemathesis run http://127.0.0.1:9901/openapi.json --url http://127.0.0.1:3000",
        "tests/contract/check.py",
        "def run_schemathesis",
    ),
    ("cargo fmt", "Makefile", "cargo fmt --all -- --check"),
    (
        "cargo fmt --all --check",
        "Makefile",
        "cargo fmt --all -- --check",
    ),
    (
        "cargo clippy",
        "Makefile",
        "cargo clippy --workspace --all-targets -- -D warnings",
    ),
    (
        "cargo clippy --workspace --all-targets -- -D warnings",
        "Makefile",
        "cargo clippy --workspace --all-targets -- -D warnings",
    ),
    (
        "cargo test --workspace",
        "Makefile",
        "\tcargo test --workspace",
    ),
    (
        "helm lint --strict",
        "deploy/checks/chart.py",
        "\"lint\", \"--strict\"",
    ),
    (
        "helm template",
        "deploy/checks/chart.py",
        "\"template\", RELEASE",
    ),
    (
        "streamgate --version",
        "tests/commands.rs",
        "fn version_names_the_commit_and_the_build_date",
    ),
    (
        "streamgate --help",
        "tests/commands.rs",
        "fn help_names_every_variable_the_shipped_configs_read",
    ),
    (
        "streamgate -t",
        "tests/cli.rs",
        "fn every_shipped_config_passes_the_check",
    ),
    (
        "streamgate -t -c FILE",
        "tests/cli.rs",
        "fn every_shipped_config_passes_the_check",
    ),
    (
        "streamgate -t -c new.yaml",
        "tests/cli.rs",
        "fn every_shipped_config_passes_the_check",
    ),
    (
        "streamgate -u -c new.yaml &",
        "tests/commands.rs",
        "fn after_an_upgrade_the_pid_file_names_the_new_process",
    ),
    (
        "kill -QUIT \"$(cat /tmp/streamgate.pid)\"",
        "tests/commands.rs",
        "fn after_an_upgrade_the_pid_file_names_the_new_process",
    ),
    (
        "streamgate dev-jwt",
        "tests/cli.rs",
        "fn dev_jwt_prints_a_token_and_says_it_is_for_development_only",
    ),
    (
        "streamgate token decode",
        "tests/commands.rs",
        "fn decode_shows_a_minted_tokens_claims_and_expiry_in_words",
    ),
    (
        "streamgate token verify",
        "tests/commands.rs",
        "fn verify_checks_a_minted_token_with_the_api_secret",
    ),
    (
        "curl --cacert conf/tls/dev.crt https://localhost:3443/",
        "tests/cli.rs",
        "fn the_tls_example_config_serves_as_the_readme_shows",
    ),
];

/// Why README's Helm install and verify commands are not run here.
const NO_CLUSTER: &str = "it needs a Kubernetes cluster, and none is reachable from here; \
     make deploy-check renders the chart with these values (helm template), validates every \
     object, checks the injector's patched pods as the cluster would run them, and runs one \
     pod-shaped (deploy/checks/chart.py, e2e_pod.py)";

/// README commands no test runs, and why.
const NOT_RUN: &[(&str, &str)] = &[
    (
        "docker build -f deploy/Dockerfile -t registry.example.com/platform/streamgate:0.1.0 .",
        "its base images come from registries this machine's network does not reach; \
         make deploy-check lints the Dockerfile with hadolint and runs the image's file \
         layout pod-shaped",
    ),
    (
        "helm install streamgate deploy/helm/streamgate -n streamgate --create-namespace \
         --set image.repository=registry.example.com/platform/streamgate \
         --set injector.image.repository=registry.example.com/platform/streamgate-injector \
         --set 'config.namespaces={shop}'",
        NO_CLUSTER,
    ),
    (
        "kubectl -n shop create secret generic streamgate-stream \
         --from-literal=api_key=\"$STREAM_API_KEY\" --from-file=api_secret=./api_secret",
        NO_CLUSTER,
    ),
    (
        "kubectl label namespace shop streamgate.getstream.io/inject=enabled",
        NO_CLUSTER,
    ),
    (
        "kubectl -n shop get pods -l app.kubernetes.io/name=shop \
         -o custom-columns='POD:.metadata.name,STREAMGATE:.metadata.annotations.streamgate\\.getstream\\.io/status'",
        NO_CLUSTER,
    ),
    (
        "kubectl -n shop describe replicaset -l app.kubernetes.io/name=shop | grep -A2 FailedCreate",
        NO_CLUSTER,
    ),
    ("kubectl -n shop port-forward svc/shop 8080:80 &", NO_CLUSTER),
    (
        "curl -s -X POST localhost:8080/api/tokens/user -H 'Content-Type: application/json' \
         -H \"Cookie: $YOUR_SESSION_COOKIE\" -d '{\"userId\":\"alice\"}'",
        NO_CLUSTER,
    ),
    (
        "make bench",
        "a benchmark of minutes that installs nginx, HAProxy and Node: run by hand, \
         reported in bench/results/latest.md",
    ),
    (
        "make bench-h2",
        "a benchmark: run by hand, reported in bench/results/h2-latest.md",
    ),
    (
        "make bench-tracing",
        "a benchmark under valgrind and wrk: run by hand, reported in \
         bench/results/tracing-latest.md",
    ),
    (
        "make bench-profile",
        "a profile under valgrind: run by hand, reported in bench/results/profile-latest.md",
    ),
    (
        "kubectl apply -n monitoring -f deploy/observability/prometheusrule.yaml",
        "needs a cluster with prometheus-operator, which this machine has not; make \
         deploy-check runs promtool's rule check and unit tests on the PrometheusRule's spec",
    ),
];

fn readme() -> String {
    std::fs::read_to_string(format!("{ROOT}/README.md")).expect("README.md")
}

/// README's code blocks (language, text, offset in README) and the code
/// spans of its prose, as a Markdown parser reads them.
struct Markdown {
    blocks: Vec<(String, String, usize)>,
    spans: Vec<String>,
}

fn markdown(readme: &str) -> Markdown {
    use pulldown_cmark::{CodeBlockKind, Event, Parser, Tag, TagEnd};
    let mut blocks = Vec::new();
    let mut spans = Vec::new();
    let mut current: Option<(String, String, usize)> = None;
    for (event, range) in Parser::new(readme).into_offset_iter() {
        match event {
            Event::Start(Tag::CodeBlock(kind)) => {
                let language = match kind {
                    CodeBlockKind::Fenced(language) => language.to_string(),
                    CodeBlockKind::Indented => String::new(),
                };
                current = Some((language, String::new(), range.start));
            }
            Event::Text(text) => {
                if let Some((_, block, _)) = &mut current {
                    block.push_str(&text);
                }
            }
            Event::End(TagEnd::CodeBlock) => blocks.extend(current.take()),
            Event::Code(code) => spans.push(code.to_string()),
            _ => {}
        }
    }
    Markdown { blocks, spans }
}

/// The text of each `sh` block, in order.
fn sh_blocks(readme: &str) -> Vec<String> {
    markdown(readme)
        .blocks
        .into_iter()
        .filter(|(language, _, _)| language == "sh")
        .map(|(_, text, _)| text)
        .collect()
}

/// The commands of one block: lines joined across `\`, without comment
/// lines (the output README shows) and without trailing `  # …` comments.
fn commands_of(block: &str) -> Vec<String> {
    block
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let code = line.split("  #").next().unwrap_or(line);
            code.split_whitespace().collect::<Vec<_>>().join(" ")
        })
        .collect()
}

/// The output a block shows: its `# ` lines, without the `# `.
fn shown_output(block: &str) -> Vec<&str> {
    block
        .lines()
        .filter_map(|line| line.strip_prefix("# "))
        .collect()
}

/// Commands quoted in prose: `make …`, `cargo …`, `curl …`, `streamgate -…`
/// and the like, with at least one argument.
fn prose_commands(readme: &str) -> Vec<String> {
    markdown(readme)
        .spans
        .into_iter()
        // A span wrapped across lines reads as one command.
        .map(|span| span.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|span| {
            let mut words = span.split(' ');
            let program = words.next().unwrap_or_default();
            let first = words.next().unwrap_or_default();
            let subcommand = first.starts_with('-')
                || ["token", "dev-jwt"].contains(&first)
                || program != "streamgate";
            [
                "make",
                "cargo",
                "curl",
                "streamgate",
                "docker",
                "kubectl",
                "helm",
                "python3",
            ]
            .contains(&program)
                && !first.is_empty()
                && subcommand
        })
        .collect()
}

fn all_commands(readme: &str) -> Vec<String> {
    let mut all: Vec<String> = sh_blocks(readme)
        .iter()
        .flat_map(|block| commands_of(block))
        .collect();
    all.extend(prose_commands(readme));
    all.sort_unstable();
    all.dedup();
    all
}

/// The one `sh` block holding `needle`.
fn block_with(readme: &str, needle: &str) -> String {
    let found: Vec<String> = sh_blocks(readme)
        .into_iter()
        .filter(|block| block.contains(needle))
        .collect();
    assert_eq!(found.len(), 1, "README blocks with {needle:?}: {found:?}");
    found.into_iter().next().unwrap_or_default()
}

/// The first example request: a token for john_doe.
fn first_example(readme: &str) -> String {
    let block = sh_blocks(readme)
        .into_iter()
        .find(|b| b.contains(r#"-d '{"userId": "john_doe"}'"#))
        .expect("the first example");
    commands_of(&block).remove(0)
}

/// The commands run in this file, by the text README shows.
fn run_here(readme: &str) -> Vec<String> {
    let mut here: Vec<String> = [
        "make run",
        "STREAM_API_KEY=",
        "curl -X POST http://localhost:3000/api/tokens/user",
        "make run CONFIG=conf/identity-jwt.yaml",
        "TOKEN=",
        "streamgate token decode \"$TOKEN\"",
        "echo \"$TOKEN\" | streamgate token decode -",
        "STREAM_API_SECRET=… streamgate token verify \"$TOKEN\"",
        "streamgate token verify --secret-file",
        "SECRET=dev-secret-do-not-use-in-production",
        "echo \"$TOKEN\" | cut",
        "printf %s \"${TOKEN%.*}\"",
        "make reload CONFIG=conf/streamgate.yaml",
        "make reload",
    ]
    .iter()
    .flat_map(|prefix| {
        all_commands(readme)
            .into_iter()
            .filter(move |command| command.starts_with(prefix))
    })
    .collect();
    here.sort_unstable();
    here.dedup();
    here
}

#[test]
fn every_readme_command_is_exercised() {
    let readme = readme();
    let commands = all_commands(&readme);
    assert!(commands.len() > 30, "too few commands found: {commands:?}");
    let here = run_here(&readme);
    let mut unexercised = Vec::new();
    for command in &commands {
        let elsewhere = ELSEWHERE.iter().any(|(c, _, _)| c == command);
        let not_run = NOT_RUN.iter().any(|(c, _)| c == command);
        if !here.contains(command) && !elsewhere && !not_run {
            unexercised.push(command.clone());
        }
    }
    assert!(
        unexercised.is_empty(),
        "README commands that no test runs (run them here, or name the test in ELSEWHERE): \
         {unexercised:#?}"
    );
    for (command, file, text) in ELSEWHERE {
        assert!(
            commands.iter().any(|c| c == command),
            "ELSEWHERE names {command:?}, which README no longer shows"
        );
        let source = std::fs::read_to_string(format!("{ROOT}/{file}"))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(
            source.contains(text),
            "{file} no longer has {text:?}, which runs {command:?}"
        );
    }
    for (command, _) in NOT_RUN {
        assert!(
            commands.iter().any(|c| c == command),
            "NOT_RUN names {command:?}, which README no longer shows"
        );
    }
}

// ---- running README's lines ---------------------------------------------------

/// `bash -c script` from the repository root, with `env`; `PATH` leads with
/// the directory of the streamgate `cargo test` built (README calls it
/// `streamgate`) and has no rustup or cargo (`make run` needs neither, given
/// `CARGO`).
fn bash(script: &str, env: &[(&str, String)]) -> Command {
    let binary = common::binary();
    let bin_dir = binary.parent().expect("binary directory");
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(script)
        .current_dir(ROOT)
        .env(
            "PATH",
            format!("{}:/usr/local/bin:/usr/bin:/bin", bin_dir.display()),
        )
        .env_remove("MAKEFLAGS")
        .env_remove("MAKELEVEL");
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

fn run(script: &str, env: &[(&str, String)]) -> Output {
    bash(script, env)
        .stdin(Stdio::null())
        .output()
        .expect("run bash")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A README line started in the background in its own process group (as a
/// terminal's foreground job), its output in a file.
struct Background {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl Background {
    fn start(line: &str, env: &[(&str, String)]) -> Background {
        let log = tempfile::NamedTempFile::new().expect("log file");
        let child = bash(line, env)
            .stdin(Stdio::null())
            .stdout(log.reopen().expect("log"))
            .stderr(log.reopen().expect("log"))
            .process_group(0)
            .spawn()
            .expect("start bash");
        Background { child, log }
    }

    /// Whether `port` accepts connections within 15 s.
    fn listens_on(&self, port: u16) -> bool {
        common::poll(Duration::from_secs(15), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .is_some()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Ctrl-C to the group (make and the streamgate it started); what it
    /// printed.
    fn stop(mut self) -> String {
        self.signal("-INT");
        let stopped = common::poll(Duration::from_secs(20), || {
            self.child.try_wait().ok().flatten()
        });
        if stopped.is_none() {
            self.signal("-KILL");
            let _ = self.child.wait();
        }
        self.log()
    }

    fn signal(&self, signal: &str) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args([signal, "--", &group]).status();
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal("-KILL");
            let _ = self.child.wait();
        }
    }
}

/// Free ports for the listeners, a closed one for the app, and temporary
/// server.pid_file and server.upgrade_sock, as the variables the shipped
/// configuration and `make reload` read.
struct Addresses {
    port: u16,
    env: Vec<(&'static str, String)>,
    pid_file: PathBuf,
    cargo_calls: PathBuf,
    _dir: tempfile::TempDir,
}

impl Addresses {
    /// The arguments make gave cargo, a line per call.
    fn cargo_calls(&self) -> String {
        std::fs::read_to_string(&self.cargo_calls).unwrap_or_default()
    }
}

fn addresses() -> Addresses {
    let dir = tempfile::tempdir().expect("temp dir");
    let (port, admin) = (common::free_port(), common::free_port());
    let pid_file = dir.path().join("streamgate.pid");
    let cargo_calls = dir.path().join("cargo-calls");
    let cargo = dir.path().join("cargo");
    std::fs::write(
        &cargo,
        format!("#!/bin/sh\necho \"$*\" >> '{}'\n", cargo_calls.display()),
    )
    .expect("write the cargo stand-in");
    std::fs::set_permissions(&cargo, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("make it executable");
    let env = vec![
        (
            "MAKEFLAGS",
            format!(
                "CARGO={} BIN={}",
                cargo.display(),
                common::binary().display()
            ),
        ),
        ("LISTEN", format!("127.0.0.1:{port}")),
        ("ADMIN_LISTEN", format!("127.0.0.1:{admin}")),
        ("APP_ADDRESS", format!("127.0.0.1:{}", common::free_port())),
        ("PID_FILE", pid_file.display().to_string()),
        (
            "RELOAD_LOG",
            dir.path().join("streamgate.log").display().to_string(),
        ),
        (
            "UPGRADE_SOCK",
            dir.path().join("upgrade.sock").display().to_string(),
        ),
    ];
    Addresses {
        port,
        env,
        pid_file,
        cargo_calls,
        _dir: dir,
    }
}

/// README's line moved to `port`.
fn on_port(line: &str, port: u16) -> String {
    line.replace("localhost:3000", &format!("localhost:{port}"))
        .replace("127.0.0.1:3000", &format!("127.0.0.1:{port}"))
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", text(&output.stdout), text(&output.stderr)))
}

/// `make run` as the quick start shows, its warnings as README prints them,
/// the four example requests as written, then `make reload` handing over to a
/// new process that serves the same port.
#[test]
fn make_run_the_examples_and_make_reload_work_as_written() {
    let readme = readme();
    let addresses = addresses();
    let port = addresses.port;
    let env = &addresses.env;
    let quick_start = block_with(&readme, "make run    #");
    let gate = Background::start(&commands_of(&quick_start)[0], env);
    assert!(gate.listens_on(port), "make run:\n{}", gate.log());
    assert_eq!(addresses.cargo_calls(), "build --release\n");
    let warnings = plain_block_after(&readme, "it uses loud development credentials");
    for line in warnings.lines() {
        let said = on_port(line.trim_start_matches("WARN  streamgate] "), port);
        assert!(
            gate.log().contains(&said),
            "{said}\nnot in:\n{}",
            gate.log()
        );
    }

    let examples = block_with(&readme, r#""validityInSeconds": 86400"#);
    let answer = json(&run(&on_port(&commands_of(&examples)[0], port), env));
    assert_eq!(answer["success"], true, "{answer}");
    let token = common::token_in(&answer);
    let claims = common::claims(token, streamgate::config::DEV_SECRET);
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(claims["user_id"], "john_doe", "{claims}");
    assert!((86_400..86_400 + 60).contains(&lifetime), "{claims}");

    let call = block_with(&readme, r#""callId": "meeting-123""#);
    let answer = json(&run(&on_port(&commands_of(&call)[0], port), env));
    let claims = common::claims(common::token_in(&answer), streamgate::config::DEV_SECRET);
    assert_eq!(
        claims["call_cids"],
        serde_json::json!(["default:meeting-123"])
    );

    let first = first_example(&readme);
    let answer = json(&run(&on_port(&first, port), env));
    let claims = common::claims(common::token_in(&answer), streamgate::config::DEV_SECRET);
    assert_eq!(claims["user_id"], "john_doe", "{claims}");

    let refused = block_with(&readme, "-d '{}'\n");
    let answer = json(&run(&on_port(&commands_of(&refused)[0], port), env));
    assert_eq!(answer["success"], false, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("userId"),
        "{answer}"
    );

    make_reload_hands_over(&readme, &addresses, gate);
}

/// README's `make reload` line while `gate` (README's `make run`) serves:
/// the new process writes its pid and serves the same port, the old one
/// hands over and exits by itself.
fn make_reload_hands_over(readme: &str, addresses: &Addresses, mut gate: Background) {
    let (port, env) = (addresses.port, &addresses.env);
    let old_pid = std::fs::read_to_string(&addresses.pid_file).expect("pid file written");
    let reload = block_with(readme, "make reload CONFIG=conf/streamgate.yaml");
    let reloaded = run(&commands_of(&reload)[0], env);
    assert_eq!(
        reloaded.status.code(),
        Some(0),
        "{}{}",
        text(&reloaded.stdout),
        text(&reloaded.stderr)
    );
    let new_pid = common::poll(Duration::from_secs(20), || {
        std::fs::read_to_string(&addresses.pid_file)
            .ok()
            .filter(|pid| *pid != old_pid && !pid.trim().is_empty())
    })
    .expect("the new process writes its pid");
    // The old process hands over and exits by itself, and `make run` with it.
    let ended = common::poll(Duration::from_secs(30), || {
        gate.child.try_wait().ok().flatten()
    });
    assert!(
        ended.is_some(),
        "the old process still runs:\n{}",
        gate.log()
    );
    let answer = json(&run(&on_port(&first_example(readme), port), env));
    assert_eq!(answer["success"], true, "after the reload: {answer}");
    let status = Command::new("kill")
        .args(["-TERM", new_pid.trim()])
        .status()
        .expect("kill");
    assert!(status.success(), "stop the new process {new_pid}");
}

/// The first block without a language after `anchor` in README.
fn plain_block_after(readme: &str, anchor: &str) -> String {
    let at = readme.find(anchor).expect("anchor in README");
    markdown(readme)
        .blocks
        .into_iter()
        .find(|(language, _, offset)| language.is_empty() && *offset > at)
        .map(|(_, text, _)| text)
        .expect("a block after the anchor")
}

/// The quick start's "run it for real" line: the given credentials are used
/// (the answer's `apiKey`, the token's signature), nothing is said about
/// development credentials, and with no app on APP_ADDRESS a proxied request
/// gets the JSON 502 naming the upstream, as README says.
#[test]
fn make_run_with_real_credentials_uses_them() {
    let readme = readme();
    let line = commands_of(&block_with(&readme, "STREAM_API_KEY=… STREAM_API_SECRET=…")).remove(0);
    let addresses = addresses();
    let app = addresses
        .env
        .iter()
        .find(|(name, _)| *name == "APP_ADDRESS")
        .map(|(_, value)| value.clone())
        .expect("APP_ADDRESS");
    let secret = "readme-secret-0123456789abcdefghijklmnopqrstuvwxyz";
    let line = line
        .replacen("STREAM_API_KEY=…", "STREAM_API_KEY=readme-key", 1)
        .replacen(
            "STREAM_API_SECRET=…",
            &format!("STREAM_API_SECRET={secret}"),
            1,
        )
        .replacen(
            "APP_ADDRESS=127.0.0.1:8080",
            &format!("APP_ADDRESS={app}"),
            1,
        );
    assert!(!line.contains('…'), "{line}");
    let gate = Background::start(&line, &addresses.env);
    let port = addresses.port;
    assert!(gate.listens_on(port), "{}", gate.log());
    let first = first_example(&readme);
    let answer = json(&run(&on_port(&first, port), &addresses.env));
    assert_eq!(answer["data"]["apiKey"], "readme-key", "{answer}");
    let claims = common::claims(common::token_in(&answer), secret);
    assert_eq!(claims["user_id"], "john_doe");
    let proxied = run(
        &format!("curl -s -w ' %{{http_code}}' http://localhost:{port}/"),
        &addresses.env,
    );
    let said = text(&proxied.stdout);
    assert!(said.ends_with(" 502"), "{said}");
    assert!(said.contains("\"success\":false"), "{said}");
    let log = gate.stop();
    assert!(!log.contains("DEVELOPMENT secret"), "{log}");
}

/// The "Try it" recipe of the `jwt` section, line by line: `make run
/// CONFIG=conf/identity-jwt.yaml`, then in another shell the token from
/// `dev-jwt` (README's `./target/release/streamgate` is the binary `cargo
/// test` built here) and the curl; the Stream token is alice's, and the start
/// warned that the development key is trusted.
#[test]
fn the_jwt_recipe_runs_as_written() {
    let readme = readme();
    let recipe = commands_of(&block_with(&readme, "dev-jwt --sub alice"));
    assert_eq!(recipe.len(), 3, "{recipe:?}");
    let addresses = addresses();
    let port = addresses.port;
    let gate = Background::start(&recipe[0], &addresses.env);
    assert!(gate.listens_on(port), "{}", gate.log());
    let binary = common::binary().display().to_string();
    let script = format!(
        "{}\n{}",
        recipe[1].replace("./target/release/streamgate", &binary),
        on_port(&recipe[2], port)
    );
    let answer = json(&run(&script, &addresses.env));
    let claims = common::claims(common::token_in(&answer), streamgate::config::DEV_SECRET);
    assert_eq!(claims["user_id"], "alice", "{claims}");
    let log = gate.stop();
    assert!(
        log.contains(
            "route POST /api/tokens/user accepts JWTs signed with the DEVELOPMENT key of conf/dev-idp/"
        ),
        "{log}"
    );
}

/// Digits and times in words vary from run to run: the shape of a line.
fn shape(line: &str) -> String {
    let line = match line.find(" (") {
        Some(at) if line.ends_with(')') => &line[..at],
        _ => line,
    };
    line.chars()
        .map(|c| if c.is_ascii_digit() { '0' } else { c })
        .collect()
}

/// `streamgate token decode|verify` as "Verifying a token" shows them, on a
/// token streamgate minted: decode prints what README shows (times aside),
/// from an argument and from stdin; verify with the secret in the
/// environment says valid; verify with another secret in a file, the token
/// on stdin, prints README's `invalid:` line.
#[test]
fn the_token_commands_print_what_the_readme_shows() {
    let readme = readme();
    let block = block_with(&readme, "streamgate token decode \"$TOKEN\"");
    let commands = commands_of(&block);
    assert_eq!(commands.len(), 4, "{commands:?}");
    let shown = shown_output(&block);
    let addresses = addresses();
    let gate = Background::start("make run", &addresses.env);
    assert!(gate.listens_on(addresses.port), "{}", gate.log());
    let first = first_example(&readme);
    let minted = json(&run(&on_port(&first, addresses.port), &addresses.env));
    drop(gate.stop());
    let token = common::token_in(&minted).to_owned();

    let dir = tempfile::tempdir().expect("temp dir");
    let mut secret_file = tempfile::NamedTempFile::new().expect("secret file");
    secret_file
        .write_all(b"another-secret-than-the-one-that-signed-it")
        .expect("write secret");
    std::fs::write(dir.path().join("token.txt"), &token).expect("token.txt");
    let env = [
        ("TOKEN", token.clone()),
        ("HOME", dir.path().display().to_string()),
    ];
    let in_dir = |line: &str| {
        let line = line
            .replacen("…", streamgate::config::DEV_SECRET, 1)
            .replacen(
                "/run/secrets/stream-api-secret",
                &secret_file.path().display().to_string(),
                1,
            );
        let mut command = bash(&line, &env);
        command.current_dir(dir.path());
        command.output().expect("run bash")
    };

    let decoded = in_dir(&commands[0]);
    assert_eq!(decoded.status.code(), Some(0), "{}", text(&decoded.stderr));
    let printed = text(&decoded.stdout);
    let decode_shown: Vec<String> = shown[..shown.len() - 1].iter().map(|l| shape(l)).collect();
    let decode_printed: Vec<String> = printed.lines().map(shape).collect();
    assert_eq!(decode_printed, decode_shown, "{printed}");
    let from_stdin = in_dir(&commands[1]);
    let from_stdin: Vec<String> = text(&from_stdin.stdout).lines().map(shape).collect();
    assert_eq!(from_stdin, decode_printed);

    let valid = in_dir(&commands[2]);
    assert_eq!(valid.status.code(), Some(0), "{}", text(&valid.stderr));
    assert!(
        text(&valid.stdout).starts_with("valid:"),
        "{}",
        text(&valid.stdout)
    );

    let invalid = in_dir(&commands[3]);
    assert_eq!(invalid.status.code(), Some(1));
    let said = format!("{}{}", text(&invalid.stdout), text(&invalid.stderr));
    assert_eq!(said.trim_end(), shown[shown.len() - 1], "{said}");
}

/// The by-hand check with base64url and openssl prints exactly the lines
/// README shows: the payload, and the signature equal to the token's last
/// segment.
#[test]
fn the_manual_check_prints_what_the_readme_shows() {
    let readme = readme();
    let block = block_with(&readme, "openssl dgst -sha256 -hmac");
    let script = commands_of(&block).join("\n");
    let output = run(&script, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let expected: Vec<&str> = shown_output(&block)
        .into_iter()
        .map(|line| line.split("   (").next().unwrap_or(line))
        .collect();
    let printed = text(&output.stdout);
    assert_eq!(printed.lines().collect::<Vec<_>>(), expected);
    let token = commands_of(&block)[0]
        .trim_start_matches("TOKEN=")
        .to_owned();
    assert!(token.ends_with(expected[1]), "{token}");
}
