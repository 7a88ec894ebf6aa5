//! streamgate: a Pingora sidecar that answers `POST /api/tokens/user` with a
//! GetStream.io user token and proxies every other request to the application.
//!
//! The crate is split so that everything a request *means* lives in modules
//! without Pingora types ([`config`], [`routing`], [`token_contract`],
//! [`signing`]) and can be tested without sockets; [`proxy`] is the thin layer
//! that connects them to Pingora.

pub mod config;
pub mod cors;
pub mod identity;
pub mod limits;
pub mod logging;
pub mod proxy;
pub mod routing;
pub mod signing;
pub mod token_contract;
