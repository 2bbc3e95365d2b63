//! vigil-collector: receives agent reports, stores them durably, and serves operators.
//!
//! Data flows one way: [`ingest`] (validate, identify, commit, acknowledge) → [`classify`]
//! (findings) → [`incidents`] (hysteresis, silence, grouping) → [`store`] → [`api`] and
//! [`metrics`] for operators. Every stage reaches state through the [`store::Store`]
//! trait only, and reads time through [`clock::Clock`].

pub mod api;
pub mod classify;
pub mod clock;
pub mod config;
pub mod ctl;
pub mod enroll;
pub mod error;
pub mod events;
pub mod ids;
pub mod incidents;
pub mod ingest;
pub mod maintenance;
pub mod metrics;
pub mod pki;
pub mod ratelimit;
pub mod readings;
pub mod schedule;
pub mod secret;
pub mod server;
pub mod status;
pub mod store;
pub mod tasks;
pub mod tls;
