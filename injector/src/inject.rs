//! What the injector does to one pod: leave it, deny it with a reason, or
//! patch it. Pure: no I/O, so the golden fixtures test every decision.
//!
//! The patch is written as JSON Patch operations against the pod the API
//! server sent, not as a diff of a re-serialized `Pod`: k8s-openapi drops the
//! fields it does not know, and a diff would remove them from the pod.
//!
//! Traffic is wired by port *name*, so that the app's Service is not edited:
//! the app container's port that the Service targets (`http` unless the pod's
//! annotation names another) is renamed `app-<name>`, and streamgate's proxy
//! port takes the name. A Service whose `targetPort` is that name now reaches
//! streamgate; streamgate reaches the app on `127.0.0.1:<containerPort>`. A
//! Service that targets the app by number cannot be redirected this way, so a
//! numeric port is refused (see `names::PortName`).

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, ReplaceOperation};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, Pod, PodSpec,
    Probe, SecretKeySelector, SecretVolumeSource, Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use crate::annotations::{
    AnnotationError, IdentityMode, Injection, PodAnnotations, SidecarKind, APP_PORT, INJECTED,
    STATUS,
};
use crate::names::{NameError, ObjectName, PortName};
use crate::template::{SidecarTemplate, CONFIG_VOLUME, PROXY_PORT, SECRET_VOLUME, TMP_VOLUME};

/// Never injected, whatever its labels say: the cluster's own pods.
pub const SYSTEM_NAMESPACE: &str = "kube-system";
/// The name of the added container.
pub const CONTAINER_NAME: &str = "streamgate";

/// What a pod gets when its annotations say nothing (the chart's values).
#[derive(Debug, Clone)]
pub struct Defaults {
    pub sidecar: SidecarKind,
    pub app_port: PortName,
    pub config: ObjectName,
    pub secret: ObjectName,
}

/// Why a pod is admitted unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unchanged {
    SystemNamespace,
    NotRequested,
    OptedOut,
    AlreadyInjected,
}

impl Unchanged {
    pub fn as_str(self) -> &'static str {
        match self {
            Unchanged::SystemNamespace => "kube-system is never injected",
            Unchanged::NotRequested => "no streamgate.getstream.io/inject annotation",
            Unchanged::OptedOut => "streamgate.getstream.io/inject is \"false\"",
            Unchanged::AlreadyInjected => "streamgate is already in the pod",
        }
    }
}

/// Why a pod that asked for streamgate cannot have it as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("streamgate: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Annotations(Vec<AnnotationError>),
    #[error(
        "streamgate: no container port is named {name} (annotation {APP_PORT}{default}): name the \
         app's port that the Service targets, e.g. ports: [{{name: {name}, containerPort: 8080}}] \
         with the Service's targetPort: {name}, or set {APP_PORT} to the name it has"
    )]
    NoAppPort {
        name: PortName,
        default: &'static str,
    },
    #[error(
        "streamgate: containers {containers} each have a port named {name}: annotation {APP_PORT} \
         must name a port of one container"
    )]
    AmbiguousAppPort { name: PortName, containers: String },
    #[error(
        "streamgate: container {container} uses port {port}, which streamgate listens on in the pod"
    )]
    PortInUse { container: String, port: i32 },
    #[error("streamgate: the app's port {name} would be renamed, but {reason}")]
    AppPortName { name: PortName, reason: String },
    #[error("streamgate: the pod already has a volume named {0}, which the injector adds")]
    VolumeInUse(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Unchanged(Unchanged),
    Patched(Vec<PatchOperation>),
    Denied(Refusal),
}

#[derive(Debug, Clone)]
pub struct Injector {
    pub defaults: Defaults,
    pub template: SidecarTemplate,
}

/// Where the app's port is: `spec.containers[container].ports[port]`.
struct AppPort<'a> {
    container: usize,
    port: usize,
    number: i32,
    name: &'a PortName,
}

impl Injector {
    /// The verdict on a pod being created in `namespace`.
    pub fn review(&self, pod: &Pod, namespace: &str) -> Verdict {
        if namespace == SYSTEM_NAMESPACE {
            return Verdict::Unchanged(Unchanged::SystemNamespace);
        }
        let empty = Default::default();
        let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
        let settings = match PodAnnotations::parse(annotations) {
            Ok(settings) => settings,
            Err(errors) => return Verdict::Denied(Refusal::Annotations(errors)),
        };
        match settings.injection {
            None => return Verdict::Unchanged(Unchanged::NotRequested),
            Some(Injection::OptedOut) => return Verdict::Unchanged(Unchanged::OptedOut),
            Some(Injection::Requested) => {}
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let has_streamgate = all_containers(&spec).any(|c| c.name == CONTAINER_NAME);
        if settings.injected || has_streamgate {
            return Verdict::Unchanged(Unchanged::AlreadyInjected);
        }
        match self.patch(&spec, &settings) {
            Ok(patch) => Verdict::Patched(patch),
            Err(refusal) => Verdict::Denied(refusal),
        }
    }

    fn patch(
        &self,
        spec: &PodSpec,
        settings: &PodAnnotations,
    ) -> Result<Vec<PatchOperation>, Refusal> {
        let app_port = self.find_app_port(spec, settings)?;
        self.check_ports(spec, &app_port)?;
        let renamed = app_port
            .name
            .for_app()
            .map_err(|e| app_port_name(&app_port, e))?;
        if all_containers(spec)
            .flat_map(|c| c.ports.as_deref().unwrap_or_default())
            .any(|p| p.name.as_deref() == Some(renamed.as_str()))
        {
            return Err(Refusal::AppPortName {
                name: app_port.name.clone(),
                reason: format!("another port is already named {renamed}"),
            });
        }
        let ours = [CONFIG_VOLUME, SECRET_VOLUME, TMP_VOLUME];
        if let Some(v) = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| ours.contains(&v.name.as_str()))
        {
            return Err(Refusal::VolumeInUse(v.name.clone()));
        }

        let kind = settings.sidecar.unwrap_or(self.defaults.sidecar);
        let mut ops = vec![add(
            &["metadata", "annotations", STATUS],
            Value::from(INJECTED),
        )];
        let (container, port) = (app_port.container.to_string(), app_port.port.to_string());
        let app = ["spec", "containers", &container];
        let port_name = [&app[..], &["ports", &port, "name"]].concat();
        ops.push(replace(&port_name, Value::from(renamed.as_str())));
        ops.extend(rename_in_handlers(
            &spec.containers[app_port.container],
            &app,
            app_port.name,
            &renamed,
        ));

        let container = self.container(settings, kind, &app_port);
        let list = match kind {
            SidecarKind::Native => "initContainers",
            SidecarKind::Classic => "containers",
        };
        let exists = match kind {
            SidecarKind::Native => spec.init_containers.is_some(),
            SidecarKind::Classic => true,
        };
        ops.extend(append(list, exists, vec![to_value(&container)]));
        let volumes = self.volumes(settings).iter().map(to_value).collect();
        ops.extend(append("volumes", spec.volumes.is_some(), volumes));
        Ok(ops)
    }

    fn find_app_port<'a>(
        &'a self,
        spec: &PodSpec,
        settings: &'a PodAnnotations,
    ) -> Result<AppPort<'a>, Refusal> {
        let name = settings
            .app_port
            .as_ref()
            .unwrap_or(&self.defaults.app_port);
        let found: Vec<(usize, usize, i32)> = spec
            .containers
            .iter()
            .enumerate()
            .flat_map(|(ci, c)| {
                let ports = c.ports.as_deref().unwrap_or_default().iter().enumerate();
                ports
                    .filter(|(_, p)| p.name.as_deref() == Some(name.as_str()))
                    .map(move |(pi, p)| (ci, pi, p.container_port))
            })
            .collect();
        match found[..] {
            [(container, port, number)] => Ok(AppPort {
                container,
                port,
                number,
                name,
            }),
            [] => Err(Refusal::NoAppPort {
                name: name.clone(),
                default: if settings.app_port.is_some() {
                    ""
                } else {
                    ", by default"
                },
            }),
            _ => Err(Refusal::AmbiguousAppPort {
                name: name.clone(),
                containers: found
                    .iter()
                    .map(|(ci, _, _)| spec.containers[*ci].name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// streamgate's ports are free in the pod's network namespace.
    fn check_ports(&self, spec: &PodSpec, app_port: &AppPort<'_>) -> Result<(), Refusal> {
        let taken = |port: i32| self.template.port_numbers().any(|p| p == port);
        if taken(app_port.number) {
            return Err(Refusal::PortInUse {
                container: spec.containers[app_port.container].name.clone(),
                port: app_port.number,
            });
        }
        for c in all_containers(spec) {
            if let Some(p) = c.ports.iter().flatten().find(|p| taken(p.container_port)) {
                return Err(Refusal::PortInUse {
                    container: c.name.clone(),
                    port: p.container_port,
                });
            }
        }
        Ok(())
    }

    /// The template, with what this pod decides filled in.
    fn container(
        &self,
        settings: &PodAnnotations,
        kind: SidecarKind,
        app_port: &AppPort<'_>,
    ) -> Container {
        let mut c = self.template.container.clone();
        c.name = CONTAINER_NAME.to_owned();
        c.restart_policy = match kind {
            SidecarKind::Native => Some("Always".to_owned()),
            SidecarKind::Classic => None,
        };
        let file = match settings.identity {
            None => "streamgate.yaml".to_owned(),
            Some(mode) => identity_file(mode),
        };
        c.args = Some(vec![
            "-c".to_owned(),
            format!("{}/{file}", self.template.config_dir),
        ]);
        for p in c.ports.iter_mut().flatten() {
            if p.name.as_deref() == Some(PROXY_PORT) {
                p.name = Some(app_port.name.to_string());
            }
        }
        let secret = settings.secret.as_ref().unwrap_or(&self.defaults.secret);
        let mut env: Vec<EnvVar> = c
            .env
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.name != "APP_ADDRESS" && e.name != "STREAM_API_KEY")
            .collect();
        env.push(EnvVar {
            name: "APP_ADDRESS".to_owned(),
            value: Some(format!("127.0.0.1:{}", app_port.number)),
            ..Default::default()
        });
        env.push(EnvVar {
            name: "STREAM_API_KEY".to_owned(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.to_string(),
                    key: "api_key".to_owned(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        c.env = Some(env);
        c
    }

    fn volumes(&self, settings: &PodAnnotations) -> [Volume; 3] {
        let config = settings.config.as_ref().unwrap_or(&self.defaults.config);
        let secret = settings.secret.as_ref().unwrap_or(&self.defaults.secret);
        [
            Volume {
                name: CONFIG_VOLUME.to_owned(),
                config_map: Some(ConfigMapVolumeSource {
                    name: config.to_string(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Volume {
                name: SECRET_VOLUME.to_owned(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret.to_string()),
                    // Readable by streamgate's non-root user without a pod-level
                    // fsGroup, which would change the app's volumes too.
                    default_mode: Some(0o444),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Volume {
                name: TMP_VOLUME.to_owned(),
                empty_dir: Some(EmptyDirVolumeSource {
                    medium: Some("Memory".to_owned()),
                    size_limit: Some(Quantity("1Mi".to_owned())),
                }),
                ..Default::default()
            },
        ]
    }
}

/// The ConfigMap key an identity mode reads: `identity-<mode>.yaml`.
pub fn identity_file(mode: IdentityMode) -> String {
    format!("identity-{}.yaml", mode.as_str())
}

fn app_port_name(app_port: &AppPort<'_>, e: NameError) -> Refusal {
    Refusal::AppPortName {
        name: app_port.name.clone(),
        reason: e.to_string(),
    }
}

fn all_containers(spec: &PodSpec) -> impl Iterator<Item = &Container> {
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
}

/// The app's probes and lifecycle hooks that name the renamed port follow it:
/// left alone they would reach streamgate's port instead of the app's.
fn rename_in_handlers(
    app: &Container,
    at: &[&str],
    old: &PortName,
    new: &PortName,
) -> Vec<PatchOperation> {
    let probes: [(&str, Option<&Probe>); 3] = [
        ("livenessProbe", app.liveness_probe.as_ref()),
        ("readinessProbe", app.readiness_probe.as_ref()),
        ("startupProbe", app.startup_probe.as_ref()),
    ];
    let named = |port: &IntOrString| matches!(port, IntOrString::String(s) if s == old.as_str());
    let mut ops = Vec::new();
    for (key, probe) in probes {
        let Some(probe) = probe else { continue };
        if probe.http_get.as_ref().is_some_and(|h| named(&h.port)) {
            ops.push(replace(
                &[at, &[key, "httpGet", "port"]].concat(),
                Value::from(new.as_str()),
            ));
        }
        if probe.tcp_socket.as_ref().is_some_and(|t| named(&t.port)) {
            ops.push(replace(
                &[at, &[key, "tcpSocket", "port"]].concat(),
                Value::from(new.as_str()),
            ));
        }
    }
    let hooks = app.lifecycle.as_ref();
    for (key, hook) in [
        ("postStart", hooks.and_then(|l| l.post_start.as_ref())),
        ("preStop", hooks.and_then(|l| l.pre_stop.as_ref())),
    ] {
        if hook
            .and_then(|h| h.http_get.as_ref())
            .is_some_and(|h| named(&h.port))
        {
            let path = [at, &["lifecycle", key, "httpGet", "port"]].concat();
            ops.push(replace(&path, Value::from(new.as_str())));
        }
    }
    ops
}

fn pointer(tokens: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().copied())
}

fn add(tokens: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: pointer(tokens),
        value,
    })
}

fn replace(tokens: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Replace(ReplaceOperation {
        path: pointer(tokens),
        value,
    })
}

/// Items appended to the pod spec's list `list`, which is created when absent.
fn append(list: &str, exists: bool, items: Vec<Value>) -> Vec<PatchOperation> {
    if exists {
        // One operation per item: each appends, whatever the list holds by then.
        items
            .into_iter()
            .map(|v| add(&["spec", list, "-"], v))
            .collect()
    } else {
        vec![add(&["spec", list], Value::Array(items))]
    }
}

/// A k8s-openapi object as JSON; their `Serialize` has no failing case (no
/// maps with non-string keys), so `Null` is never written.
fn to_value<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}
