//! `keelctl`: the client of the control protocol (also `keel ctl`).
//!
//! It talks to /run/keel/control.sock inside the host, or to the socket QEMU exposes
//! for the guest's virtio-serial port (`keel-build run --control-socket PATH`).

use clap::{Parser, Subcommand};
use keel_supervisor::control::{Client, Command, ExecResult, Status, DEFAULT_SOCKET};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Operate a keel host.
#[derive(Debug, Parser)]
#[command(name = "keelctl", version, about = "Operate a keel host over its control channel")]
pub struct Cli {
    /// Control socket to talk to.
    #[arg(long, global = true, default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Seconds to wait for an answer.
    #[arg(long, global = true, default_value_t = 30)]
    timeout: u64,
    /// Print the raw JSON result.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// Show the host's state.
    Status,
    /// Power the host off.
    Poweroff,
    /// Reboot the host.
    Reboot,
    /// Run a command on the host; exits with its exit code.
    Exec {
        /// Kill the command after this many seconds.
        #[arg(long = "kill-after", default_value_t = 120)]
        kill_after: u64,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
}

/// Run keelctl with `args` (argv[0] included); returns the process exit code.
pub fn main(args: Vec<String>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("keelctl: {message}");
            1
        }
    }
}

fn run(cli: Cli) -> Result<i32, String> {
    let mut client = Client::connect(&cli.socket).map_err(|e| e.to_string())?;
    let timeout = Duration::from_secs(cli.timeout);
    let (command, wait) = match &cli.command {
        CtlCommand::Status => (Command::Status, timeout),
        CtlCommand::Poweroff => (Command::Poweroff, timeout),
        CtlCommand::Reboot => (Command::Reboot, timeout),
        CtlCommand::Exec { kill_after, argv } => (
            Command::Exec { argv: argv.clone(), timeout_secs: Some(*kill_after) },
            timeout.max(Duration::from_secs(kill_after + 5)),
        ),
    };
    let result = client.call(command, wait).map_err(|e| e.to_string())?;
    if cli.json {
        println!("{result}");
        if let CtlCommand::Exec { .. } = cli.command {
            return Ok(result.get("exit_code").and_then(|c| c.as_i64()).unwrap_or(1) as i32);
        }
        return Ok(0);
    }
    match cli.command {
        CtlCommand::Status => print_status(serde_json::from_value(result).map_err(|e| format!("bad status: {e}"))?),
        CtlCommand::Exec { .. } => {
            let exec: ExecResult = serde_json::from_value(result).map_err(|e| format!("bad exec result: {e}"))?;
            let _ = std::io::stdout().write_all(exec.stdout.as_bytes());
            let _ = std::io::stderr().write_all(exec.stderr.as_bytes());
            return Ok(exec.exit_code);
        }
        _ => println!("{}", result.as_str().unwrap_or("ok")),
    }
    Ok(0)
}

fn print_status(status: Status) {
    println!("hostname:  {}", status.hostname);
    println!("state:     {}", status.state);
    println!("uptime:    {:.1} s", status.uptime_secs);
    println!("pid 1 rss: {} KiB", status.pid1_rss_kib);
    if status.boot_errors.is_empty() {
        println!("boot errors: none");
    } else {
        println!("boot errors:");
        for problem in status.boot_errors {
            println!("  - {problem}");
        }
    }
}
