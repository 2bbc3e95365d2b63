//! vigil-agent: the host side of Vigil. Probes read the host through [`root::HostRoot`];
//! [`run`] numbers each report ([`state`]), keeps it in the [`spool`] until the collector
//! acknowledges it, and streams it over [`transport`], a mutual-TLS connection whose client
//! certificate [`enroll`] obtains and renews and [`identity`] keeps on disk.

pub mod backoff;
pub mod clock;
pub mod config;
pub mod enroll;
pub mod facts;
pub mod goodbye;
pub mod identity;
pub mod probe;
pub mod read;
pub mod renewal;
pub mod root;
pub mod run;
pub mod spool;
pub mod state;
pub mod transport;
