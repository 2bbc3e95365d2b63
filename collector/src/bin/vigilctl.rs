//! `vigilctl`: the operator CLI. Thin: parses arguments and calls into `vigil_collector::ctl`.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use vigil_collector::ctl::{Client, CtlError, host_detail, hosts_table};

/// Work with a Vigil collector from the terminal: list hosts and inspect one.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// The collector's HTTP address.
    #[arg(long, env = "VIGIL_SERVER", default_value = "http://127.0.0.1:7701", global = true)]
    server: String,
    /// Print the API's JSON instead of a table (for scripts).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List hosts, or show one host in detail.
    Hosts {
        #[command(subcommand)]
        action: Option<HostsAction>,
    },
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
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

async fn run(cli: Cli) -> Result<String, CtlError> {
    let client = Client::new(&cli.server)?;
    match cli.command {
        Command::Hosts { action: None | Some(HostsAction::List) } => {
            let list = client.get("/api/v1/hosts").await?;
            Ok(if cli.json { format!("{list:#}\n") } else { hosts_table(&list, now_ms()) })
        }
        Command::Hosts { action: Some(HostsAction::Show { host }) } => {
            let id = client.resolve_host(&host).await?;
            let detail = client.get(&format!("/api/v1/hosts/{id}")).await?;
            Ok(if cli.json { format!("{detail:#}\n") } else { host_detail(&detail, now_ms()) })
        }
    }
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
