//! The API calls of the self-managed certificate: the Secret every replica
//! shares, and the webhook configuration's `caBundle`.
//!
//! Replicas race at install and at renewal; the API server's optimistic
//! concurrency settles it. A write is a create (fails if another replica
//! created the Secret first) or a replace at the `resourceVersion` read (fails
//! if another replica wrote since); the loser reads again and takes what the
//! winner stored. The RBAC this needs is the chart's: get/create/update of one
//! Secret in the injector's namespace, get/update of one
//! MutatingWebhookConfiguration.

use std::collections::BTreeMap;
use std::time::SystemTime;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, ObjectMeta, PostParams};

use super::{plan, CertError, Material, BUNDLE, CA_CERT, CA_KEY, TLS_CERT, TLS_KEY};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{what}: {source}")]
    Api {
        what: String,
        source: Box<kube::Error>,
    },
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("Secret {0}: other writers kept winning; trying again later")]
    Contended(String),
    #[error("MutatingWebhookConfiguration {0} has no webhooks")]
    NoWebhooks(String),
}

pub struct Cluster {
    secrets: Api<Secret>,
    webhooks: Api<MutatingWebhookConfiguration>,
    secret: String,
    webhook: String,
}

fn api(what: String) -> impl FnOnce(kube::Error) -> ClusterError {
    move |source| ClusterError::Api {
        what,
        source: Box::new(source),
    }
}

/// A write lost to another replica's: read again.
fn lost_race(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_conflict() || s.is_already_exists())
}

impl Cluster {
    pub fn new(client: kube::Client, namespace: &str, secret: &str, webhook: &str) -> Self {
        Cluster {
            secrets: Api::namespaced(client.clone(), namespace),
            webhooks: Api::all(client),
            secret: secret.to_owned(),
            webhook: webhook.to_owned(),
        }
    }

    /// Reads the Secret, renews what is due, stores it, and makes the webhook
    /// trust its CA; returns the material to serve with.
    pub async fn reconcile(&self, dns_names: &[String]) -> Result<Material, ClusterError> {
        let what = format!("Secret {}", self.secret);
        for _ in 0..5 {
            let current = self
                .secrets
                .get_opt(&self.secret)
                .await
                .map_err(api(what.clone()))?;
            let stored = current.as_ref().and_then(material_of);
            let material = match (plan(stored.as_ref(), dns_names, SystemTime::now())?, stored) {
                (None, Some(kept)) => kept,
                (renewed, _) => {
                    // `plan` keeps nothing only when something was stored.
                    let Some(new) = renewed else { continue };
                    let written = match current {
                        Some(mut secret) => {
                            secret.data = Some(data_of(&new));
                            self.secrets
                                .replace(&self.secret, &PostParams::default(), &secret)
                                .await
                        }
                        None => {
                            let secret = Secret {
                                metadata: ObjectMeta {
                                    name: Some(self.secret.clone()),
                                    ..Default::default()
                                },
                                data: Some(data_of(&new)),
                                ..Default::default()
                            };
                            self.secrets.create(&PostParams::default(), &secret).await
                        }
                    };
                    match written {
                        Ok(_) => {
                            log::info!("{what}: stored a new serving certificate");
                            new
                        }
                        Err(e) if lost_race(&e) => continue,
                        Err(e) => return Err(api(what)(e)),
                    }
                }
            };
            self.trust(&material.bundle).await?;
            return Ok(material);
        }
        Err(ClusterError::Contended(self.secret.clone()))
    }

    /// Sets `caBundle` on every webhook of the configuration, when it differs.
    async fn trust(&self, bundle: &str) -> Result<(), ClusterError> {
        let what = format!("MutatingWebhookConfiguration {}", self.webhook);
        for _ in 0..5 {
            let mut config = self
                .webhooks
                .get(&self.webhook)
                .await
                .map_err(api(what.clone()))?;
            let webhooks = config.webhooks.as_mut().filter(|w| !w.is_empty());
            let Some(webhooks) = webhooks else {
                return Err(ClusterError::NoWebhooks(self.webhook.clone()));
            };
            let want = ByteString(bundle.as_bytes().to_vec());
            if webhooks
                .iter()
                .all(|w| w.client_config.ca_bundle.as_ref() == Some(&want))
            {
                return Ok(());
            }
            for w in webhooks.iter_mut() {
                w.client_config.ca_bundle = Some(want.clone());
            }
            match self
                .webhooks
                .replace(&self.webhook, &PostParams::default(), &config)
                .await
            {
                Ok(_) => {
                    log::info!("{what}: caBundle set to the injector's CA");
                    return Ok(());
                }
                Err(e) if lost_race(&e) => continue,
                Err(e) => return Err(api(what)(e)),
            }
        }
        Err(ClusterError::Contended(self.webhook.clone()))
    }
}

fn material_of(secret: &Secret) -> Option<Material> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| String::from_utf8(data.get(key)?.0.clone()).ok();
    Some(Material {
        ca_cert: text(CA_CERT)?,
        ca_key: text(CA_KEY)?,
        bundle: text(BUNDLE)?,
        cert: text(TLS_CERT)?,
        key: text(TLS_KEY)?,
    })
}

fn data_of(m: &Material) -> BTreeMap<String, ByteString> {
    [
        (CA_CERT, &m.ca_cert),
        (CA_KEY, &m.ca_key),
        (BUNDLE, &m.bundle),
        (TLS_CERT, &m.cert),
        (TLS_KEY, &m.key),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
    .collect()
}
