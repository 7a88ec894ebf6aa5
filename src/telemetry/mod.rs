//! What streamgate tells operators: the process log ([`process_log`]), one access-log
//! line per request ([`access_log`]), Prometheus metrics ([`metrics`]) and
//! distributed traces ([`trace`]).
//! None of it ever carries a secret, a token or a credential.

pub mod access_log;
pub mod metrics;
pub mod process_log;
pub mod trace;
