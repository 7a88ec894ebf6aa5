//! streamgate-injector: a mutating admission webhook that adds the streamgate
//! sidecar to pods that ask for it. A program of its own, in its own workspace
//! member, so that kube-rs and k8s-openapi never link into the sidecar.
//!
//! The map, from the pure decisions to the I/O:
//! - `names`, `annotations`: Kubernetes names and the pod's
//!   `streamgate.getstream.io/*` annotations, parsed once into types;
//! - `template`: the streamgate container every injected pod gets;
//! - `inject` (pure): leave the pod, deny it with a reason, or patch it;
//! - `review`: the AdmissionReview exchange (the response written here);
//! - `certs`: the self-managed serving certificate (`plan` is pure,
//!   `cluster` the API calls);
//! - `serve`: the HTTPS server and its certificate reloads.
#![forbid(unsafe_code)]

pub mod annotations;
pub mod certs;
pub mod inject;
pub mod names;
pub mod review;
pub mod serve;
pub mod template;
