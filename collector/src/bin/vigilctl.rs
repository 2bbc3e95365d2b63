//! `vigilctl`: the operator CLI. Thin: parses arguments and calls into `vigil_collector::ctl`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use vigil_collector::ctl::incidents::{incident_detail, incidents_table, maintenance_table};
use vigil_collector::ctl::{
    Client, CtlError, cell, host_detail, hosts_table, json_for_terminal, table,
};

/// Work with a Vigil collector from the terminal: hosts, incidents, maintenance windows,
/// customers, enrolment tokens, API tokens, the audit log and the background tasks.
///
/// Every command needs an API token: `--token`, `VIGIL_TOKEN`, or a file named by
/// `--token-file` / `VIGIL_TOKEN_FILE`. On first start the collector writes an admin token to
/// `<data_dir>/admin.token`.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// The collector's HTTP address.
    #[arg(long, env = "VIGIL_SERVER", default_value = "http://127.0.0.1:7701", global = true)]
    server: String,
    /// API token (prefer VIGIL_TOKEN or --token-file: flags show up in `ps`).
    #[arg(long, env = "VIGIL_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// File holding the API token, e.g. <data_dir>/admin.token. Refused when others may read
    /// it (chmod 600).
    #[arg(long, env = "VIGIL_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// CA certificate (PEM) to trust for an https:// server: the collector's
    /// <data_dir>/tls/ca.crt, or the CA of its http.cert.
    #[arg(long, env = "VIGIL_CA_CERT", global = true)]
    ca_cert: Option<PathBuf>,
    /// Send the token over plain http:// to a server that is not loopback (127.0.0.0/8, ::1,
    /// localhost). Without it vigilctl refuses, before connecting: the token would cross the
    /// network unencrypted. Prefer https:// (http.tls = true on the collector).
    #[arg(long, global = true)]
    insecure_http: bool,
    /// Print the API's JSON instead of a table (for scripts).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List hosts, show one, or revoke, move or replace one.
    Hosts {
        #[command(subcommand)]
        action: Option<HostsAction>,
    },
    /// Customers and their sites.
    Customers {
        #[command(subcommand)]
        action: Option<CustomersAction>,
    },
    /// Add a site to a customer.
    Sites {
        #[command(subcommand)]
        action: SitesAction,
    },
    /// Enrolment tokens: what a new agent needs to join.
    Tokens {
        #[command(subcommand)]
        action: Option<TokensAction>,
    },
    /// Operator API tokens (roles viewer, operator, admin).
    ApiTokens {
        #[command(subcommand)]
        action: Option<ApiTokensAction>,
    },
    /// The audit log: every change made through the API, newest first.
    Audit {
        /// How many entries.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// List incidents, worst and newest first (by default only open and acknowledged ones).
    Incidents {
        /// States to list: open, acknowledged, resolved, closed, active (= open and
        /// acknowledged), comma-separated.
        #[arg(long, default_value = "active")]
        state: String,
        /// Every state.
        #[arg(long, conflicts_with = "state")]
        all: bool,
        /// Only this fault level (1–4).
        #[arg(long)]
        level: Option<u8>,
        /// Only this customer (name).
        #[arg(long)]
        customer: Option<String>,
        /// Only this site (name; with --customer).
        #[arg(long, requires = "customer")]
        site: Option<String>,
        /// Only this host (id or unique prefix).
        #[arg(long)]
        host: Option<String>,
        /// Most incidents to list.
        #[arg(long, default_value_t = 200)]
        limit: u32,
    },
    /// Show or work one incident (INC-000042, or 42).
    Incident {
        #[command(subcommand)]
        action: IncidentAction,
    },
    /// Planned maintenance windows: findings inside one are recorded but open nothing.
    Maintenance {
        #[command(subcommand)]
        action: Option<MaintenanceAction>,
    },
    /// Notifications that did not reach their receiver: list the dead letters, or drop one.
    Notifications {
        #[command(subcommand)]
        action: NotificationsAction,
    },
    /// The collector's background tasks (retention, SLA sweep, notifications, silence,
    /// revocation): period, runs, failures and the latest outcome. Needs the admin role.
    Tasks,
    /// Show which token this is.
    Whoami,
}

#[derive(Debug, Subcommand)]
enum NotificationsAction {
    /// Deliveries whose attempts are used up or that the receiver refused; each is still
    /// retried every notify.dead_letter_retry until delivered.
    DeadLetters,
    /// Give a dead letter up for good: it is never sent (needs the operator role).
    Drop { id: i64 },
}

#[derive(Debug, Subcommand)]
enum IncidentAction {
    /// The incident with its timeline.
    Show { id: String },
    /// Acknowledge: a person is on it (stops the response clock). Needs the operator role.
    Ack { id: String },
    /// Assign to someone.
    Assign { id: String, assignee: String },
    /// Add a note to the timeline.
    Note { id: String, note: String },
    /// Resolve with the service record: cause and action taken.
    Resolve {
        id: String,
        /// Cause and action taken (required).
        #[arg(long, short)]
        note: String,
    },
}

#[derive(Debug, Subcommand)]
enum MaintenanceAction {
    /// List windows (the default).
    List,
    /// Announce a window. Scope: a customer, a site of it, or a host; optionally some rules.
    Add(Box<MaintenanceAdd>),
    /// Delete a window by id.
    Rm { id: String },
}

#[derive(Debug, clap::Args)]
struct MaintenanceAdd {
    #[arg(long)]
    customer: Option<String>,
    #[arg(long, requires = "customer")]
    site: Option<String>,
    /// Host id or unique prefix.
    #[arg(long)]
    host: Option<String>,
    /// Local start time in --time-zone, like 2026-11-28T22:00.
    #[arg(long)]
    start: String,
    /// Length, like 2h or 90m.
    #[arg(long)]
    duration: String,
    /// once, daily, weekly or monthly.
    #[arg(long, default_value = "once")]
    recurrence: String,
    /// IANA time zone, like Europe/Berlin.
    #[arg(long, default_value = "UTC")]
    time_zone: String,
    /// Last local date an occurrence may start, like 2027-03-01.
    #[arg(long)]
    until: Option<String>,
    /// Only these rules (repeatable); default every rule.
    #[arg(long = "rule")]
    rules: Vec<String>,
    /// What the work is.
    #[arg(long)]
    reason: String,
}

#[derive(Debug, Subcommand)]
enum HostsAction {
    /// List every host (the default).
    List,
    /// Show one host: facts, status, latest readings, probes, agent instances, events.
    Show {
        /// Host id, or a unique prefix of it as `vigilctl hosts` prints it.
        host: String,
    },
    /// Cut a host off: its certificate stops working on every replica within seconds, open
    /// streams included. Needs the admin role.
    Revoke { host: String },
    /// Move a host to another customer's site without re-enrolling it. Needs the admin role.
    Move {
        host: String,
        #[arg(long)]
        customer: String,
        #[arg(long)]
        site: String,
    },
    /// Hand a re-installed machine's history (OLD) to its new identity (NEW); OLD is revoked.
    Replace { old: String, new: String },
}

#[derive(Debug, Subcommand)]
enum CustomersAction {
    /// List customers and their sites (the default).
    List,
    /// Create a customer.
    Add { name: String },
    /// Show a customer's contract: time zone, targets and support hours per level, holidays,
    /// receivers per support tier.
    Show { name: String },
    /// Change a customer's contract (admin); takes effect at the next SLA sweep, no restart.
    Set {
        name: String,
        #[command(flatten)]
        flags: vigil_collector::ctl::contract::ContractFlags,
    },
    /// SLA compliance per level over a period (default the last 30 days).
    Sla {
        name: String,
        /// Start of the period, RFC 3339 (like 2026-11-01T00:00:00Z).
        #[arg(long)]
        from: Option<String>,
        /// End of the period, RFC 3339; default now.
        #[arg(long)]
        to: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum SitesAction {
    /// Create a site of a customer.
    Add { customer: String, name: String },
}

#[derive(Debug, Subcommand)]
enum TokensAction {
    /// List enrolment tokens (the default).
    List,
    /// Create an enrolment token and print the command that enrols an agent with it. The
    /// token is shown once and never logged.
    Create {
        #[arg(long)]
        customer: String,
        #[arg(long)]
        site: String,
        /// How many hosts may enrol with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// How long it stays valid.
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
}

#[derive(Debug, Subcommand)]
enum ApiTokensAction {
    /// List API tokens (the default).
    List,
    /// Create an API token; it is shown once.
    Create {
        /// A name saying whose token it is.
        #[arg(long)]
        name: String,
        /// viewer (read), operator (work incidents), admin (everything).
        #[arg(long)]
        role: String,
        /// Limit the token to this customer's hosts (e.g. for the customer's own staff).
        #[arg(long)]
        customer: Option<String>,
    },
    /// Revoke an API token by id.
    Revoke { id: String },
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn token(cli: &Cli) -> Result<Option<String>, CtlError> {
    if let Some(token) = &cli.token {
        return Ok(Some(token.clone()));
    }
    let Some(path) = &cli.token_file else { return Ok(None) };
    // A token anyone else on the machine can read is a token already given away.
    vigil_collector::data_dir::check_private_file(path)
        .map_err(|e| CtlError::Usage(format!("--token-file {}: {e}", path.display())))?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| CtlError::Usage(format!("--token-file {}: {e}", path.display())))?;
    Ok(Some(text.trim().to_owned()))
}

/// Every field printed goes through here: what hosts and clients wrote is shown, never
/// interpreted by the terminal.
fn s(v: &Value) -> String {
    cell(v)
}

/// [`s`] without the length bound, for what the operator copies whole.
fn whole(v: &Value) -> String {
    v.as_str().map_or_else(|| s(v), vigil_collector::sanitize::for_terminal_whole)
}

/// One table row per element of the JSON array `list`.
fn each(list: &Value, row: impl Fn(&Value) -> Vec<String>) -> Vec<Vec<String>> {
    list.as_array().into_iter().flatten().map(row).collect()
}

fn ms(v: &Value) -> String {
    v.as_i64().map(vigil_collector::clock::rfc3339).unwrap_or_else(|| "-".into())
}

async fn run(cli: Cli) -> Result<String, CtlError> {
    let client =
        Client::with_token(&cli.server, token(&cli)?, cli.ca_cert.as_deref(), cli.insecure_http)?;
    let out = |value: Value, render: &dyn Fn(&Value) -> String| {
        if cli.json { json_for_terminal(&value) } else { render(&value) }
    };
    Ok(match &cli.command {
        Command::Hosts { action: None | Some(HostsAction::List) } => {
            out(client.get("/api/v1/hosts").await?, &|v| hosts_table(v, now_ms()))
        }
        Command::Hosts { action: Some(HostsAction::Show { host }) } => {
            let id = client.resolve_host(host).await?;
            out(client.get(&format!("/api/v1/hosts/{id}")).await?, &|v| host_detail(v, now_ms()))
        }
        Command::Hosts { action: Some(HostsAction::Revoke { host }) } => {
            let id = client.resolve_host(host).await?;
            let v = client.post(&format!("/api/v1/hosts/{id}/revoke"), json!({})).await?;
            out(v, &|_| format!("host {id} revoked\n"))
        }
        Command::Hosts { action: Some(HostsAction::Move { host, customer, site }) } => {
            let id = client.resolve_host(host).await?;
            let body = json!({ "customer": customer, "site": site });
            let v = client.post(&format!("/api/v1/hosts/{id}/move"), body).await?;
            out(v, &|_| format!("host {id} moved to {customer}/{site}\n"))
        }
        Command::Hosts { action: Some(HostsAction::Replace { old, new }) } => {
            let (old, new) = (client.resolve_host(old).await?, client.resolve_host(new).await?);
            let v =
                client.post(&format!("/api/v1/hosts/{old}/replace"), json!({ "by": new })).await?;
            out(v, &|_| format!("host {old} replaced by {new}; its history now belongs to {new}\n"))
        }
        Command::Customers { action: None | Some(CustomersAction::List) } => {
            out(client.get("/api/v1/customers").await?, &|v| {
                let rows = each(&v["customers"], |c| {
                    let sites: Vec<String> = c["sites"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|site| s(&site["name"]))
                        .collect();
                    vec![s(&c["name"]), sites.join(", "), s(&c["id"])]
                });
                table(&["CUSTOMER", "SITES", "ID"], rows)
            })
        }
        Command::Customers { action: Some(CustomersAction::Add { name }) } => {
            let v = client.post("/api/v1/customers", json!({ "name": name })).await?;
            out(v, &|_| format!("customer {name:?} created\n"))
        }
        Command::Customers { action: Some(CustomersAction::Show { name }) } => {
            let path = format!("/api/v1/customers/{}/contract", urlencode(name));
            out(client.get(&path).await?, &vigil_collector::ctl::contract::render)
        }
        Command::Customers { action: Some(CustomersAction::Set { name, flags }) } => {
            let path = format!("/api/v1/customers/{}/contract", urlencode(name));
            let current = client.get(&path).await?;
            let contract =
                vigil_collector::ctl::contract::apply(current["contract"].clone(), flags)?;
            client.put(&path, contract).await?;
            out(client.get(&path).await?, &vigil_collector::ctl::contract::render)
        }
        Command::Customers { action: Some(CustomersAction::Sla { name, from, to }) } => {
            let mut path = format!("/api/v1/customers/{}/sla?", urlencode(name));
            if let Some(from) = from {
                path.push_str(&format!("from={}&", urlencode(from)));
            }
            if let Some(to) = to {
                path.push_str(&format!("to={}", urlencode(to)));
            }
            out(client.get(&path).await?, &|v| {
                let pct = |v: &Value| {
                    v.as_f64().map(|r| format!("{:.1} %", r * 100.0)).unwrap_or_else(|| "-".into())
                };
                let mins = |v: &Value| {
                    v.as_i64()
                        .map(|ms| format!("{:.1} min", ms as f64 / 60_000.0))
                        .unwrap_or_else(|| "-".into())
                };
                let rows = each(&v["levels"], |l| {
                    vec![
                        s(&l["level"]),
                        s(&l["opened"]),
                        format!(
                            "{}/{} {}",
                            s(&l["response"]["met"]),
                            s(&l["response"]["missed"]),
                            pct(&l["response"]["ratio"])
                        ),
                        format!(
                            "{}/{} {}",
                            s(&l["resolution"]["met"]),
                            s(&l["resolution"]["missed"]),
                            pct(&l["resolution"]["ratio"])
                        ),
                        mins(&l["mean_time_to_acknowledge_ms"]),
                        mins(&l["mean_time_to_resolve_ms"]),
                    ]
                });
                format!(
                    "SLA of {} from {} to {}\n{}",
                    s(&v["customer"]),
                    s(&v["from"]),
                    s(&v["to"]),
                    table(
                        &[
                            "LEVEL",
                            "OPENED",
                            "RESPONSE MET/MISSED",
                            "RESOLUTION MET/MISSED",
                            "MTTA",
                            "MTTR"
                        ],
                        rows
                    )
                )
            })
        }
        Command::Sites { action: SitesAction::Add { customer, name } } => {
            let path = format!("/api/v1/customers/{}/sites", urlencode(customer));
            let v = client.post(&path, json!({ "name": name })).await?;
            out(v, &|_| format!("site {customer}/{name} created\n"))
        }
        Command::Tokens { action: None | Some(TokensAction::List) } => {
            out(client.get("/api/v1/enrollment-tokens").await?, &|v| {
                let rows = each(&v["tokens"], |t| {
                    vec![
                        s(&t["id"]),
                        format!("{}/{}", s(&t["customer"]), s(&t["site"])),
                        s(&t["uses_left"]),
                        ms(&t["expires_at_ms"]),
                        s(&t["created_by"]),
                    ]
                });
                table(&["ID", "CUSTOMER/SITE", "USES LEFT", "EXPIRES", "CREATED BY"], rows)
            })
        }
        Command::Tokens { action: Some(TokensAction::Create { customer, site, uses, ttl }) } => {
            let body = json!({ "customer": customer, "site": site, "uses": uses, "ttl": ttl });
            out(client.post("/api/v1/enrollment-tokens", body).await?, &|v| {
                format!(
                    "Enrolment token for {}/{} ({} use(s), valid until {}).\n\
                     Run this as root on the new host:\n\n  {}\n",
                    s(&v["customer"]),
                    s(&v["site"]),
                    s(&v["uses"]),
                    s(&v["expires_at"]),
                    whole(&v["join_command"])
                )
            })
        }
        Command::ApiTokens { action: None | Some(ApiTokensAction::List) } => {
            out(client.get("/api/v1/api-tokens").await?, &|v| {
                let rows = each(&v["tokens"], |t| {
                    vec![
                        s(&t["id"]),
                        s(&t["name"]),
                        s(&t["role"]),
                        if t["customer"].is_null() { "(all)".into() } else { s(&t["customer"]) },
                        if t["revoked_at_ms"].is_null() {
                            "active".into()
                        } else {
                            "revoked".into()
                        },
                    ]
                });
                table(&["ID", "NAME", "ROLE", "CUSTOMER", "STATE"], rows)
            })
        }
        Command::ApiTokens { action: Some(ApiTokensAction::Create { name, role, customer }) } => {
            let body = json!({ "name": name, "role": role, "customer": customer });
            out(client.post("/api/v1/api-tokens", body).await?, &|v| {
                format!(
                    "API token {:?} ({}) created; it is shown only now:\n\n  {}\n",
                    s(&v["name"]),
                    s(&v["role"]),
                    whole(&v["token"])
                )
            })
        }
        Command::ApiTokens { action: Some(ApiTokensAction::Revoke { id }) } => {
            let v = client.delete(&format!("/api/v1/api-tokens/{}", urlencode(id))).await?;
            out(v, &|_| format!("API token {id} revoked\n"))
        }
        Command::Audit { limit } => {
            out(client.get(&format!("/api/v1/audit?limit={limit}")).await?, &|v| {
                let rows = each(&v["entries"], |e| {
                    vec![
                        ms(&e["at_ms"]),
                        s(&e["actor"]),
                        s(&e["action"]),
                        s(&e["target"]),
                        s(&e["source"]),
                        s(&e["detail"]),
                    ]
                });
                table(&["WHEN", "WHO", "ACTION", "TARGET", "FROM", "DETAIL"], rows)
            })
        }
        Command::Incidents { state, all, level, customer, site, host, limit } => {
            let mut query = vec![format!("limit={limit}")];
            if !all {
                query.push(format!("state={}", urlencode(state)));
            }
            if let Some(level) = level {
                query.push(format!("level={level}"));
            }
            if let Some(customer) = customer {
                query.push(format!("customer={}", urlencode(customer)));
            }
            if let Some(site) = site {
                query.push(format!("site={}", urlencode(site)));
            }
            if let Some(host) = host {
                query.push(format!("host={}", client.resolve_host(host).await?));
            }
            let path = format!("/api/v1/incidents?{}", query.join("&"));
            out(client.get(&path).await?, &|v| incidents_table(v, now_ms()))
        }
        Command::Incident { action } => {
            let (id, verb, body) = match action {
                IncidentAction::Show { id } => {
                    let v = client.get(&format!("/api/v1/incidents/{}", urlencode(id))).await?;
                    return Ok(out(v, &incident_detail));
                }
                IncidentAction::Ack { id } => (id, "ack", json!({})),
                IncidentAction::Assign { id, assignee } => {
                    (id, "assign", json!({ "assignee": assignee }))
                }
                IncidentAction::Note { id, note } => (id, "notes", json!({ "note": note })),
                IncidentAction::Resolve { id, note } => (id, "resolve", json!({ "note": note })),
            };
            let v =
                client.post(&format!("/api/v1/incidents/{}/{verb}", urlencode(id)), body).await?;
            out(v, &|v| {
                format!(
                    "{} {} (L{} {}: {})\n",
                    s(&v["number"]),
                    s(&v["state"]),
                    s(&v["level"]),
                    s(&v["rule"]),
                    s(&v["summary"])
                )
            })
        }
        Command::Maintenance { action: None | Some(MaintenanceAction::List) } => {
            out(client.get("/api/v1/maintenance").await?, &maintenance_table)
        }
        Command::Maintenance { action: Some(MaintenanceAction::Add(add)) } => {
            let MaintenanceAdd {
                customer,
                site,
                host,
                start,
                duration,
                recurrence,
                time_zone,
                until,
                rules,
                reason,
            } = add.as_ref();
            let host = match host {
                Some(host) => Some(client.resolve_host(host).await?),
                None => None,
            };
            let body = json!({
                "customer": customer, "site": site, "host": host, "start": start,
                "duration": duration, "recurrence": recurrence, "time_zone": time_zone,
                "until": until, "rules": rules, "reason": reason,
            });
            out(client.post("/api/v1/maintenance", body).await?, &|v| {
                format!(
                    "maintenance window {} created ({} from {} {} for {} ms); next start {}\n",
                    s(&v["id"]),
                    s(&v["recurrence"]),
                    s(&v["start_local"]),
                    s(&v["time_zone"]),
                    s(&v["duration_ms"]),
                    s(&v["next_start"])
                )
            })
        }
        Command::Maintenance { action: Some(MaintenanceAction::Rm { id }) } => {
            let v = client.delete(&format!("/api/v1/maintenance/{}", urlencode(id))).await?;
            out(v, &|_| format!("maintenance window {id} deleted\n"))
        }
        Command::Notifications { action: NotificationsAction::DeadLetters } => {
            out(client.get("/api/v1/notifications/dead-letters").await?, &|v| {
                let rows = each(&v["dead_letters"], |d| {
                    vec![
                        s(&d["id"]),
                        s(&d["receiver"]),
                        s(&d["event_id"]),
                        s(&d["attempts"]),
                        ms(&d["next_attempt_at_ms"]),
                        s(&d["last_error"]),
                    ]
                });
                table(&["ID", "RECEIVER", "EVENT", "ATTEMPTS", "NEXT TRY", "LAST ERROR"], rows)
            })
        }
        Command::Notifications { action: NotificationsAction::Drop { id } } => {
            let v = client.delete(&format!("/api/v1/notifications/{id}")).await?;
            out(v, &|v| {
                format!(
                    "delivery {id} of {} to {} dropped; it will not be sent\n",
                    s(&v["dropped"]["event_id"]),
                    s(&v["dropped"]["receiver"])
                )
            })
        }
        Command::Tasks => out(client.get("/api/v1/tasks").await?, &|v| {
            vigil_collector::ctl::tasks::tasks_table(v, now_ms())
        }),
        Command::Whoami => out(client.get("/api/v1/whoami").await?, &|v| {
            format!(
                "{} ({}{})\n",
                s(&v["name"]),
                s(&v["role"]),
                if v["customer_id"].is_null() {
                    String::new()
                } else {
                    format!(", customer {}", s(&v["customer_id"]))
                }
            )
        }),
    })
}

/// Percent-encodes a path segment.
fn urlencode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("vigilctl: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("vigilctl: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}
