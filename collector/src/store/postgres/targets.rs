//! Where the PostgreSQL store connects. `store.url` names one server, or several in libpq's
//! multi-host form (`postgres://vigil@db1:5432,db2:5432/vigil?target_session_attrs=read-write`,
//! what `pg_autoctl show uri` prints), which sqlx cannot parse itself. With several, the
//! collector writes to whichever of them is the primary (accepts writes): it looks for it at
//! start, refuses a pooled connection that lands on a standby, and watches it once a second;
//! when it stops answering or is demoted, the next primary found takes its place for every new
//! connection ([`PrimaryWatch`]). While none is found, writes fail as unavailable, agents keep
//! their reports, and nothing acknowledged is lost.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{Connection, PgConnection};

/// The servers `store.url` names, in its order.
#[derive(Debug, Clone)]
pub struct Targets {
    /// One connect option per server.
    pub servers: Vec<PgConnectOptions>,
}

/// What may follow `target_session_attrs=`: the collector writes, so it always needs the
/// primary; `any` is refused rather than silently ignored.
const SESSION_ATTRS: [&str; 2] = ["read-write", "primary"];

impl Targets {
    /// Parses `url`: one server, or several separated by commas in the host part.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (scheme, rest) =
            url.split_once("://").ok_or_else(|| "not a URL: no scheme://".to_owned())?;
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((userinfo, rest)) if !userinfo.contains('/') => (Some(userinfo), rest),
            _ => (None, rest),
        };
        let cut = rest.find(['/', '?']).unwrap_or(rest.len());
        let (hosts, tail) = rest.split_at(cut);
        let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("target_session_attrs", value)) => {
                    if !SESSION_ATTRS.contains(&value) {
                        return Err(format!(
                            "target_session_attrs={value}: the collector writes, so it needs \
                             the primary (read-write or primary)"
                        ));
                    }
                }
                _ => kept.push(pair),
            }
        }
        let query = if kept.is_empty() { String::new() } else { format!("?{}", kept.join("&")) };
        let userinfo = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
        let mut servers = Vec::new();
        for host in hosts.split(',') {
            if host.is_empty() && hosts.contains(',') {
                return Err(format!("an empty host in {hosts:?}"));
            }
            let one = format!("{scheme}://{userinfo}{host}{path}{query}");
            let options = PgConnectOptions::from_str(&one).map_err(|e| e.to_string())?;
            servers.push(options.application_name("vigil-collector"));
        }
        Ok(Self { servers })
    }

    /// `host:port` of server `index`, for logs.
    pub fn name(&self, index: usize) -> String {
        let server = &self.servers[index];
        format!("{}:{}", server.get_host(), server.get_port())
    }
}

/// How long one probe of a server may take, connecting included.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the primary is checked.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Whether the server behind `conn` accepts writes, as libpq's `target_session_attrs=read-write`
/// judges it: `transaction_read_only` is off. Not `pg_is_in_recovery()`: a standby that
/// pg_auto_failover has just promoted is out of recovery but stays read-only until the old
/// primary is known to be gone.
pub async fn is_primary(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    let read_only: String = sqlx::query_scalar("SELECT current_setting('transaction_read_only')")
        .fetch_one(&mut *conn)
        .await?;
    Ok(read_only == "off")
}

/// A connection to server `index` if it answers within [`PROBE_TIMEOUT`] and is the primary.
async fn primary_connection(targets: &Targets, index: usize) -> Option<PgConnection> {
    let probe = async {
        let mut conn = PgConnection::connect_with(&targets.servers[index]).await.ok()?;
        is_primary(&mut conn).await.ok()?.then_some(conn)
    };
    tokio::time::timeout(PROBE_TIMEOUT, probe).await.ok().flatten()
}

/// The first server, in `store.url`'s order, that answers as the primary.
pub async fn find_primary(targets: &Targets) -> Option<(usize, PgConnection)> {
    for index in 0..targets.servers.len() {
        if let Some(conn) = primary_connection(targets, index).await {
            return Some((index, conn));
        }
    }
    None
}

/// Keeps a pool pointed at the primary of several servers.
#[derive(Debug)]
pub struct PrimaryWatch {
    pub targets: Targets,
    pub pool: PgPool,
    /// Which server the pool connects to now.
    pub current: usize,
}

impl PrimaryWatch {
    /// Checks the current primary every [`WATCH_EVERY`] over a connection of its own; when it
    /// fails or answers as a standby, looks for the primary among all servers and points the
    /// pool's new connections at it. Runs until the pool is closed.
    pub async fn run(mut self, mut probe: Option<PgConnection>) {
        while !self.pool.is_closed() {
            tokio::time::sleep(WATCH_EVERY).await;
            let healthy = match probe.as_mut() {
                Some(conn) => {
                    matches!(
                        tokio::time::timeout(PROBE_TIMEOUT, is_primary(conn)).await,
                        Ok(Ok(true))
                    )
                }
                None => false,
            };
            if healthy {
                continue;
            }
            probe = None;
            let Some((index, conn)) = find_primary(&self.targets).await else {
                tracing::warn!(
                    was = %self.targets.name(self.current),
                    "no PostgreSQL server answers as the primary; writes wait for one"
                );
                continue;
            };
            if index != self.current {
                tracing::warn!(
                    was = %self.targets.name(self.current),
                    now = %self.targets.name(index),
                    "the PostgreSQL primary moved; new connections go to the new primary"
                );
                self.pool.set_connect_options(self.targets.servers[index].clone());
                self.current = index;
            }
            probe = Some(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_server_is_one_target() {
        let targets = Targets::parse("postgres://vigil@db.example:5433/vigil").unwrap();
        assert_eq!(targets.servers.len(), 1);
        assert_eq!(targets.name(0), "db.example:5433");
        assert_eq!(targets.servers[0].get_database(), Some("vigil"));
        assert_eq!(targets.servers[0].get_username(), "vigil");
    }

    #[test]
    fn several_hosts_share_user_database_and_parameters() {
        let targets = Targets::parse(
            "postgres://vigil:secret@127.0.0.1:6001,127.0.0.1:6002/vigil\
             ?target_session_attrs=read-write&sslmode=disable",
        )
        .unwrap();
        assert_eq!(targets.servers.len(), 2);
        assert_eq!(targets.name(0), "127.0.0.1:6001");
        assert_eq!(targets.name(1), "127.0.0.1:6002");
        for server in &targets.servers {
            assert_eq!(server.get_database(), Some("vigil"));
            assert_eq!(server.get_username(), "vigil");
            assert!(matches!(server.get_ssl_mode(), sqlx::postgres::PgSslMode::Disable));
        }
    }

    #[test]
    fn a_session_attribute_that_allows_a_standby_is_refused_by_name() {
        let err = Targets::parse("postgres://a:1,b:2/vigil?target_session_attrs=any").unwrap_err();
        assert!(err.contains("target_session_attrs=any"), "{err}");
        assert!(Targets::parse("postgres://a:1,b:2/v?target_session_attrs=primary").is_ok());
    }

    #[test]
    fn an_empty_host_or_a_bad_port_is_refused() {
        assert!(Targets::parse("postgres://a:1,,b:2/vigil").unwrap_err().contains("empty host"));
        assert!(Targets::parse("postgres://a:1,b:port/vigil").is_err());
        assert!(Targets::parse("db.example/vigil").is_err());
    }
}
