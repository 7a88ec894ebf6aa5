//! The AdmissionReview exchange: the API server's request in (kube-core's
//! types), the response out (written here).
//!
//! The response is our own type because kube-core's `AdmissionResponse`
//! serializes `patch` as a JSON array of numbers (kube-rs#1781); the API server
//! wants the patch as a base64 string, which is what `[]byte` becomes in Go's
//! JSON. Only `admission.k8s.io/v1` is spoken: the webhook configuration asks
//! for no other.

use base64::Engine;
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionReview, Operation};
use serde::Serialize;

use crate::inject::{Injector, Verdict};

const API_VERSION: &str = "admission.k8s.io/v1";

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("not an AdmissionReview of a Pod: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("the AdmissionReview has no request")]
    NoRequest,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewResponse {
    api_version: &'static str,
    kind: &'static str,
    pub response: Response,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub uid: String,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// The JSON Patch, base64 of its JSON text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
}

/// The part of a `metav1.Status` a denial needs: the API server hands the
/// message to whoever created the pod (for a Deployment, the ReplicaSet's
/// `FailedCreate` event).
#[derive(Debug, Serialize)]
pub struct Status {
    pub code: u16,
    pub message: String,
}

/// The response to one AdmissionReview body, and the verdict for the log.
pub fn respond(body: &[u8], injector: &Injector) -> Result<(ReviewResponse, String), ReviewError> {
    let review: AdmissionReview<Pod> = serde_json::from_slice(body)?;
    let request: AdmissionRequest<Pod> = review.try_into().map_err(|_| ReviewError::NoRequest)?;
    let namespace = request.namespace.clone().unwrap_or_default();
    let pod_name = request
        .object
        .as_ref()
        .map(|p| {
            let m = &p.metadata;
            m.name
                .clone()
                .or_else(|| m.generate_name.as_ref().map(|g| format!("{g}*")))
        })
        .unwrap_or_default()
        .unwrap_or_default();
    let who = format!("{namespace}/{pod_name}");
    let mut response = Response {
        uid: request.uid.clone(),
        allowed: true,
        status: None,
        patch: None,
        patch_type: None,
    };
    let verdict = match (&request.operation, &request.object) {
        (Operation::Create, Some(pod)) => injector.review(pod, &namespace),
        // The webhook is registered for pod CREATE only; anything else passes.
        _ => {
            return Ok((
                review_of(response),
                format!("{who}: not a pod CREATE, unchanged"),
            ));
        }
    };
    let log = match verdict {
        Verdict::Unchanged(why) => format!("{who}: unchanged ({})", why.as_str()),
        Verdict::Denied(refusal) => {
            response.allowed = false;
            let message = refusal.to_string();
            let log = format!("{who}: denied: {message}");
            response.status = Some(Status { code: 400, message });
            log
        }
        Verdict::Patched(ops) => {
            let json = serde_json::to_vec(&ops)?;
            response.patch = Some(base64::engine::general_purpose::STANDARD.encode(json));
            response.patch_type = Some("JSONPatch");
            format!("{who}: streamgate added ({} patch operations)", ops.len())
        }
    };
    Ok((review_of(response), log))
}

fn review_of(response: Response) -> ReviewResponse {
    ReviewResponse {
        api_version: API_VERSION,
        kind: "AdmissionReview",
        response,
    }
}
