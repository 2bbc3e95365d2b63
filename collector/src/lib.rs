//! vigil-collector: receives agent reports, stores them durably, and serves operators.
//!
//! Data flows one way: [`ingest`] (validate, identify, commit, acknowledge) → [`classify`]
//! (findings) → [`incidents`] (hysteresis, silence, grouping) → [`store`] → [`api`] and
//! [`metrics`] for operators. [`sla`] runs the incidents' clocks and escalation and [`notify`]
//! delivers every change from the store's outbox, both on the holder of the [`lease`]. Work
//! done on a timer (retention, silence, the SLA sweep, notifications, the revocation poll) runs
//! as [`tasks`] under one driver, on its period and on demand. Every stage reaches state
//! through the [`store::Store`] trait only, and reads time through [`clock::Clock`].

pub mod admin_token;
pub mod api;
pub mod backup;
pub mod certless;
pub mod classify;
pub mod clock;
pub mod config;
pub mod ctl;
pub mod data_dir;
pub mod descriptors;
pub mod enroll;
pub mod error;
pub mod events;
pub mod exporter;
pub mod ids;
pub mod incidents;
pub mod ingest;
pub mod lease;
pub mod maintenance;
pub mod metrics;
pub mod notify;
pub mod pki;
pub mod ratelimit;
pub mod readings;
pub mod sanitize;
pub mod schedule;
pub mod secret;
pub mod server;
pub mod service;
pub mod sla;
pub mod status;
pub mod store;
pub mod tasks;
pub mod tls;
pub mod watchdog;
