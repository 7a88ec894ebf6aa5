//! Abuse limits for token routes. [`local`]: per-process sliding windows; a
//! shared backend (Redis) for limits that hold across replicas comes next,
//! behind the same `check` shape.

pub mod local;

pub use local::RateLimit;
