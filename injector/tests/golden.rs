//! Golden AdmissionReviews: each `tests/fixtures/reviews/<case>.json` is
//! answered by the injector, and the answer must equal `<case>.expected.json`
//! (allowed, the denial's message, the JSON Patch decoded from its base64);
//! where there is a patch, the pod it makes must equal `<case>.pod.json`,
//! which `make deploy-check` validates against the Kubernetes schemas and runs
//! pod-shaped. `UPDATE_GOLDEN=1 cargo test -p streamgate-injector --test
//! golden` rewrites them; review the diff. Beside the files, each case states
//! what matters about it, so a wrong golden file cannot pass.

mod common;

use base64::Engine;
use serde_json::{json, Value};
use streamgate_injector::review;

struct Answer {
    allowed: bool,
    message: Option<String>,
    patch: Option<Value>,
    pod: Option<Value>,
}

fn answer(request: &Value) -> Answer {
    let body = serde_json::to_vec(request).expect("JSON");
    let (reviewed, _) = review::respond(&body, &common::injector()).expect("an AdmissionReview");
    let out = serde_json::to_value(&reviewed).expect("JSON");
    assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(out["kind"], "AdmissionReview");
    let response = &out["response"];
    assert_eq!(
        response["uid"], request["request"]["uid"],
        "the uid is copied"
    );
    let patch = response["patch"].as_str().map(|b64| {
        assert_eq!(response["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64");
        serde_json::from_slice::<Value>(&bytes).expect("a JSON patch")
    });
    let pod = patch.as_ref().map(|p| {
        let mut pod = request["request"]["object"].clone();
        let ops: json_patch::Patch = serde_json::from_value(p.clone()).expect("patch operations");
        json_patch::patch(&mut pod, &ops).expect("the patch applies to the pod");
        pod
    });
    Answer {
        allowed: response["allowed"].as_bool().expect("allowed"),
        message: response["status"]["message"].as_str().map(str::to_owned),
        patch,
        pod,
    }
}

fn golden(name: &str, suffix: &str, actual: &Value) {
    let path = common::fixtures().join(format!("{name}.{suffix}.json"));
    let text = serde_json::to_string_pretty(actual).expect("JSON") + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, text).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert!(
        expected == text,
        "{name}: the injector's answer differs from {}:\n{text}",
        path.display()
    );
}

fn containers<'a>(pod: &'a Value, list: &str) -> Vec<&'a Value> {
    pod["spec"][list]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn streamgate<'a>(pod: &'a Value, list: &str) -> &'a Value {
    let found: Vec<&Value> = containers(pod, list)
        .into_iter()
        .filter(|c| c["name"] == "streamgate")
        .collect();
    assert_eq!(found.len(), 1, "one streamgate in {list}");
    found[0]
}

fn env<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_array()
        .and_then(|e| e.iter().find(|v| v["name"] == name))
        .unwrap_or(&Value::Null)
}

fn port_named<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["ports"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
}

/// What each case is about, beyond its golden file.
fn check(name: &str, a: &Answer) {
    match name {
        "native-named-port" | "native-appends-to-lists" => check_native(name, a),
        "classic" => check_classic(a),
        "overrides" => check_overrides(a),
        "numeric-port" | "unnamed-port" | "bad-annotations" | "port-conflict" => {
            check_denied(name, a)
        }
        "opt-out" | "not-requested" | "already-injected" | "kube-system" => {
            assert!(
                a.allowed && a.patch.is_none() && a.message.is_none(),
                "{name}: admitted unchanged"
            );
        }
        other => panic!("fixture {other} has no stated expectation: add it to check()"),
    }
}

fn check_native(name: &str, a: &Answer) {
    let pod = a.pod.as_ref().expect("patched");
    let sg = streamgate(pod, "initContainers");
    assert_eq!(sg["restartPolicy"], "Always");
    assert_eq!(sg["startupProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(
        port_named(sg, "http").expect("streamgate's port named http")["containerPort"],
        3000
    );
    let app = containers(pod, "containers")[0];
    assert!(
        port_named(app, "http").is_none(),
        "the app gave up the name"
    );
    assert_eq!(
        port_named(app, "app-http").expect("renamed")["containerPort"],
        8080
    );
    assert_eq!(
        app["readinessProbe"]["httpGet"]["port"], "app-http",
        "the probe follows"
    );
    assert_eq!(
        app["livenessProbe"]["httpGet"]["port"], "metrics",
        "other ports untouched"
    );
    assert_eq!(env(sg, "APP_ADDRESS")["value"], "127.0.0.1:8080");
    assert_eq!(sg["args"], json!(["-c", "/etc/streamgate/streamgate.yaml"]));
    assert_eq!(
        pod["metadata"]["annotations"]["streamgate.getstream.io/status"],
        "injected"
    );
    if name == "native-appends-to-lists" {
        let init = containers(pod, "initContainers");
        assert_eq!(
            init[0]["name"], "migrate",
            "the app's init containers run first"
        );
        assert_eq!(pod["spec"]["volumes"][0]["name"], "cache");
    }
    let volumes = pod["spec"]["volumes"].as_array().expect("volumes");
    assert!(volumes
        .iter()
        .any(|v| v["configMap"]["name"] == "streamgate-config"));
    assert!(volumes
        .iter()
        .any(|v| v["secret"]["secretName"] == "streamgate-stream"
            && v["secret"]["defaultMode"] == 0o444));
}

fn check_classic(a: &Answer) {
    let pod = a.pod.as_ref().expect("patched");
    let sg = streamgate(pod, "containers");
    assert!(sg.get("restartPolicy").is_none());
    assert_eq!(
        containers(pod, "containers")[0]["name"],
        "app",
        "the app stays the default container"
    );
    assert!(pod["spec"].get("initContainers").is_none());
}

fn check_overrides(a: &Answer) {
    let pod = a.pod.as_ref().expect("patched");
    let sg = streamgate(pod, "initContainers");
    assert_eq!(
        sg["args"],
        json!(["-c", "/etc/streamgate/identity-jwt.yaml"])
    );
    assert_eq!(env(sg, "APP_ADDRESS")["value"], "127.0.0.1:5000");
    assert_eq!(
        env(sg, "STREAM_API_KEY")["valueFrom"]["secretKeyRef"]["name"],
        "shop-stream"
    );
    assert!(port_named(sg, "web").is_some());
    let app = containers(pod, "containers")[0];
    assert_eq!(app["startupProbe"]["tcpSocket"]["port"], "app-web");
    let volumes = pod["spec"]["volumes"].as_array().expect("volumes");
    assert!(volumes
        .iter()
        .any(|v| v["configMap"]["name"] == "shop-streamgate"));
}

fn check_denied(name: &str, a: &Answer) {
    assert!(!a.allowed && a.patch.is_none(), "denied");
    let message = a.message.as_deref().expect("a message");
    let want: &[&str] = match name {
        "numeric-port" => &[
            "streamgate.getstream.io/app-port",
            "port number",
            "targetPort",
        ],
        "unnamed-port" => &["no container port is named http", "targetPort: http"],
        "port-conflict" => &["container app uses port 9901"],
        _ => &[
            "streamgate.getstream.io/inject: \"yes\"",
            "streamgate.getstream.io/sidecar: \"sidecar\"",
            "streamgate.getstream.io/config: \"Shop_Config\"",
            "streamgate.getstream.io/identity: \"oauth\"",
            "streamgate.getstream.io/injcet: \"true\" is not a streamgate annotation",
        ],
    };
    for w in want {
        assert!(message.contains(w), "{name}: {w:?} not in {message:?}");
    }
}

#[test]
fn every_fixture_gets_its_expected_answer() {
    let cases = common::cases();
    assert!(cases.len() >= 12, "fixtures missing: {}", cases.len());
    for (name, request) in &cases {
        let a = answer(request);
        check(name, &a);
        let mut expected = json!({ "allowed": a.allowed });
        if let Some(m) = &a.message {
            expected["message"] = json!(m);
        }
        if let Some(p) = &a.patch {
            expected["patch"] = p.clone();
        }
        golden(name, "expected", &expected);
        if let Some(pod) = &a.pod {
            golden(name, "pod", pod);
        }
    }
}
