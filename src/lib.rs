//! streamgate: a Pingora sidecar that answers `POST /api/tokens/user` (and
//! `/api/tokens/call`) with a GetStream.io token and proxies every other
//! request to the application.
//!
//! The crate is split so that everything a request *means* lives in modules
//! without Pingora types ([`config`], [`routing`], [`token_contract`],
//! [`signing`], [`identity`], [`limits`], [`cors`]) and can be tested without
//! sockets; [`proxy`], [`admin`] and [`server`] are the thin layers that connect
//! them to Pingora.

pub mod admin;
pub mod config;
pub mod cors;
pub mod identity;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod routing;
pub mod secret;
pub mod server;
pub mod signing;
pub mod token_contract;
