//! Shared by the injector's tests: the injector as the chart configures it by
//! default, with the kustomize component's streamgate container as template,
//! so that both paths add the same container.

#![allow(dead_code)] // each test binary uses its own part

use std::path::{Path, PathBuf};

use serde_json::Value;
use streamgate_injector::annotations::SidecarKind;
use streamgate_injector::inject::{Defaults, Injector};
use streamgate_injector::names::{ObjectName, PortName};
use streamgate_injector::template::SidecarTemplate;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reviews")
}

/// The component's streamgate container, as a template file's YAML.
pub fn template_yaml() -> String {
    let path = root().join("deploy/kubernetes/components/sidecar/streamgate-sidecar.yaml");
    let text = std::fs::read_to_string(&path).expect("the kustomize component");
    let patch: Value = serde_yaml_ng::from_str(&text).expect("YAML");
    let container = &patch["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(container["name"], "streamgate", "{}", path.display());
    serde_yaml_ng::to_string(container).expect("YAML")
}

pub fn injector() -> Injector {
    Injector {
        defaults: Defaults {
            sidecar: SidecarKind::Native,
            app_port: PortName::parse("http").expect("valid"),
            config: ObjectName::parse("streamgate-config").expect("valid"),
            secret: ObjectName::parse("streamgate-stream").expect("valid"),
        },
        template: SidecarTemplate::from_yaml(&template_yaml(), "component").expect("template"),
    }
}

/// The fixture cases: (name, AdmissionReview request).
pub fn cases() -> Vec<(String, Value)> {
    let mut cases: Vec<(String, Value)> = std::fs::read_dir(fixtures())
        .expect("fixtures")
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path
                .file_name()?
                .to_str()?
                .strip_suffix(".json")?
                .to_owned();
            if name.contains('.') {
                return None; // an expected output
            }
            let text = std::fs::read_to_string(&path).ok()?;
            Some((name, serde_json::from_str(&text).expect("JSON")))
        })
        .collect();
    cases.sort_by(|a, b| a.0.cmp(&b.0));
    cases
}

/// The injector binary started by a test; killed (and reaped) when dropped.
pub struct InjectorProcess(pub std::process::Child);

impl Drop for InjectorProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}
