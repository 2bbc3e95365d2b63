//! The collector's file descriptors, planned so that API clients can never starve the agents'
//! listener. At start-up the soft `RLIMIT_NOFILE` is raised to the hard limit (both figures are
//! logged), and [`Budget::split`] decides how many API connections may be open at once: a
//! quarter of what is left after a fixed [`RESERVED`] for the store, logs, listeners and the
//! process itself, and never more than `http.max_connections`. Every other descriptor is the
//! gRPC listener's, so when the API is full new API connections are accepted and closed at once
//! while agents still connect.

/// Descriptors kept for everything that is not a connection: the SQLite database and its
/// journal files, the listeners, the log, the runtime's own.
pub const RESERVED: u64 = 64;

/// Share of the remaining descriptors the HTTP API may hold (1 in `HTTP_SHARE_DIVISOR`).
pub const HTTP_SHARE_DIVISOR: u64 = 4;

/// The file-descriptor limits before and after start-up raised them; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub soft_before: Option<u64>,
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns what it was and is.
pub fn raise_nofile() -> Limits {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let before = getrlimit(Resource::Nofile);
    let mut raised = before;
    raised.current = before.maximum;
    let soft = match setrlimit(Resource::Nofile, raised) {
        Ok(()) => before.maximum,
        Err(err) => {
            tracing::warn!(error = %err, "could not raise the file-descriptor soft limit");
            before.current
        }
    };
    Limits { soft_before: before.current, soft, hard: before.maximum }
}

/// At start-up: raises the limit, splits it, and logs both with any configured cap the split
/// cannot honour.
pub fn plan(config: &crate::config::CollectorConfig) -> Budget {
    let nofile = raise_nofile();
    let budget = Budget::split(nofile.soft, config.http.max_connections);
    tracing::info!(
        soft_before = ?nofile.soft_before,
        soft = ?nofile.soft,
        hard = ?nofile.hard,
        http_max_connections = budget.http_connections,
        grpc_descriptors = ?budget.grpc_descriptors,
        "file-descriptor limit (RLIMIT_NOFILE; None is unlimited) and its split"
    );
    if budget.http_connections < config.http.max_connections {
        tracing::warn!(
            configured = config.http.max_connections,
            effective = budget.http_connections,
            "http.max_connections lowered to a quarter of the descriptors left after the \
             reserve, so API clients cannot starve the agents' listener"
        );
    }
    let grpc_wanted = (config.grpc.max_connections + config.grpc.max_certless_connections) as u64;
    if let Some(grpc) = budget.grpc_descriptors.filter(|&grpc| grpc_wanted > grpc) {
        tracing::warn!(
            descriptors = grpc,
            wanted = grpc_wanted,
            "grpc.max_connections + grpc.max_certless_connections exceed the descriptors left \
             for gRPC; raise the hard RLIMIT_NOFILE (LimitNOFILE=) or lower them"
        );
    }
    if let Some(soft) = nofile.soft {
        metrics::gauge!(crate::metrics::DESCRIPTOR_LIMIT).set(soft as f64);
    }
    budget
}

/// Accepts one connection on `listener` (the `which` listener). A failure — out of descriptors
/// and the like — is counted and logged through the rejection throttle
/// (`vigil_connections_refused_total{reason="accept_failed"}`), and answered by a 100 ms pause
/// and `None`, so an accept loop waits for descriptors to come back instead of spinning or
/// writing a line per attempt.
pub async fn accept(
    listener: &tokio::net::TcpListener,
    which: crate::events::Listener,
) -> Option<(tokio::net::TcpStream, std::net::SocketAddr)> {
    match listener.accept().await {
        Ok(pair) => Some(pair),
        Err(err) => {
            crate::events::ConnectionRefused {
                listener: which,
                reason: "accept_failed",
                message: &err.to_string(),
            }
            .emit();
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            None
        }
    }
}

/// How the descriptors are shared between the listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Most simultaneous API connections.
    pub http_connections: usize,
    /// What the gRPC listener can count on (connections, handshakes in progress); `None` when
    /// the limit is unlimited.
    pub grpc_descriptors: Option<u64>,
}

impl Budget {
    /// The split for a soft limit of `nofile` descriptors (`None`: unlimited) and the
    /// configured `http.max_connections`.
    pub fn split(nofile: Option<u64>, http_max_connections: usize) -> Self {
        let Some(nofile) = nofile else {
            return Self { http_connections: http_max_connections, grpc_descriptors: None };
        };
        let free = nofile.saturating_sub(RESERVED);
        let http_share = (free / HTTP_SHARE_DIVISOR).max(1);
        let http_connections = http_max_connections.min(http_share as usize);
        Self {
            http_connections,
            grpc_descriptors: Some(free.saturating_sub(http_connections as u64)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_gets_a_quarter_of_what_the_reserve_leaves_and_grpc_the_rest() {
        let budget = Budget::split(Some(256), 1024);
        assert_eq!(budget, Budget { http_connections: 48, grpc_descriptors: Some(144) });
        let budget = Budget::split(Some(1024), 1024);
        assert_eq!(budget, Budget { http_connections: 240, grpc_descriptors: Some(720) });
    }

    #[test]
    fn a_configured_cap_below_the_share_is_kept() {
        let budget = Budget::split(Some(1_048_576), 1024);
        assert_eq!(budget.http_connections, 1024);
        assert_eq!(budget.grpc_descriptors, Some(1_048_576 - RESERVED - 1024));
    }

    #[test]
    fn an_unlimited_or_tiny_limit_still_gives_a_usable_split() {
        assert_eq!(
            Budget::split(None, 1024),
            Budget { http_connections: 1024, grpc_descriptors: None }
        );
        // Below the reserve the API still gets one connection, so /readyz answers.
        assert_eq!(Budget::split(Some(32), 1024).http_connections, 1);
    }
}
