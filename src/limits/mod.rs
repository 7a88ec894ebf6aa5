//! Abuse limits for token routes. [`local`]: per-process sliding windows, the
//! one backend so far; a backend shared by replicas belongs beside it.

pub mod local;

pub use local::RateLimit;
