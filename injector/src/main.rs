//! The command line: flags become the injector's defaults and its serving
//! certificate's source; a bad flag or template exits 2 with the reason.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use streamgate_injector::annotations::SidecarKind;
use streamgate_injector::certs::cluster::Cluster;
use streamgate_injector::inject::{Defaults, Injector};
use streamgate_injector::names::{ObjectName, PortName};
use streamgate_injector::serve::{self, CertSource, Settings};
use streamgate_injector::template::SidecarTemplate;

#[derive(Clone, Copy, ValueEnum)]
enum Sidecar {
    Native,
    Classic,
}

/// Adds the streamgate sidecar to pods annotated streamgate.getstream.io/inject: "true".
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address of the HTTPS listener the API server calls.
    #[arg(long, default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// The streamgate container to add: a Kubernetes Container in YAML.
    #[arg(long)]
    template: PathBuf,
    /// How streamgate joins a pod without streamgate.getstream.io/sidecar.
    #[arg(long, value_enum, default_value = "native")]
    sidecar: Sidecar,
    /// The app's port name when the pod has no streamgate.getstream.io/app-port.
    #[arg(long, default_value = "http", value_parser = parse_port_name)]
    app_port: PortName,
    /// The ConfigMap when the pod has no streamgate.getstream.io/config.
    #[arg(long, default_value = "streamgate-config", value_parser = parse_object_name)]
    config: ObjectName,
    /// The Secret when the pod has no streamgate.getstream.io/secret.
    #[arg(long, default_value = "streamgate-stream", value_parser = parse_object_name)]
    secret: ObjectName,
    /// Serving certificate from files (cert-manager): the PEM chain.
    #[arg(long, requires = "tls_key_file", conflicts_with = "tls_secret")]
    tls_cert_file: Option<PathBuf>,
    /// Serving certificate from files (cert-manager): the PEM key.
    #[arg(long, requires = "tls_cert_file")]
    tls_key_file: Option<PathBuf>,
    /// Self-managed serving certificate: the Secret holding the CA and leaf.
    #[arg(long, requires_all = ["webhook", "service", "namespace"])]
    tls_secret: Option<String>,
    /// Self-managed: the MutatingWebhookConfiguration whose caBundle is set.
    #[arg(long)]
    webhook: Option<String>,
    /// Self-managed: the injector's Service (the certificate's DNS names).
    #[arg(long)]
    service: Option<String>,
    /// Self-managed: the injector's namespace (the Secret's, the Service's).
    #[arg(long, env = "POD_NAMESPACE")]
    namespace: Option<String>,
    /// How often the serving certificate is checked for renewal.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    check_interval: Duration,
}

fn parse_port_name(s: &str) -> Result<PortName, String> {
    PortName::parse(s).map_err(|e| format!("{s:?} {e}"))
}

fn parse_object_name(s: &str) -> Result<ObjectName, String> {
    ObjectName::parse(s).map_err(|e| format!("{s:?} {e}"))
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let template = match SidecarTemplate::load(&args.template) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("streamgate-injector: --template {e}");
            return ExitCode::from(2);
        }
    };
    let injector = Injector {
        defaults: Defaults {
            sidecar: match args.sidecar {
                Sidecar::Native => SidecarKind::Native,
                Sidecar::Classic => SidecarKind::Classic,
            },
            app_port: args.app_port,
            config: args.config,
            secret: args.secret,
        },
        template,
    };
    // One crypto provider for the server and the API client: ring, as the sidecar.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("streamgate-injector: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let certs = match (args.tls_cert_file, args.tls_key_file, args.tls_secret) {
            (Some(cert), Some(key), None) => CertSource::Files { cert, key },
            (None, None, Some(secret)) => {
                let (Some(webhook), Some(service), Some(namespace)) =
                    (args.webhook, args.service, args.namespace)
                else {
                    return Err(
                        "--tls-secret needs --webhook, --service and --namespace".to_owned()
                    );
                };
                let client = kube::Client::try_default()
                    .await
                    .map_err(|e| format!("Kubernetes API client: {e}"))?;
                CertSource::Managed {
                    cluster: Box::new(Cluster::new(client, &namespace, &secret, &webhook)),
                    dns_names: vec![
                        format!("{service}.{namespace}.svc"),
                        format!("{service}.{namespace}.svc.cluster.local"),
                    ],
                }
            }
            _ => {
                return Err(
                    "a serving certificate is needed: --tls-cert-file and --tls-key-file, \
                            or --tls-secret"
                        .to_owned(),
                )
            }
        };
        serve::run(
            injector,
            Settings {
                listen: args.listen,
                certs,
                check_interval: args.check_interval,
            },
        )
        .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("streamgate-injector: {e}");
            ExitCode::from(2)
        }
    }
}
