//! What streamgate tells operators: the process log ([`process_log`]), one access-log
//! line per request ([`access_log`]) and Prometheus metrics ([`metrics`]).
//! None of it ever carries a secret, a token or a credential.

pub mod access_log;
pub mod metrics;
pub mod process_log;
