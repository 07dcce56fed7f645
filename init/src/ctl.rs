//! `keelctl`: the client of the control protocol (also `keel ctl`).
//!
//! It talks to /run/keel/control.sock inside the host, or to the socket QEMU exposes
//! for the guest's virtio-serial port (`keel-build run --control-socket PATH`).

use crate::api::remote::{self, Context};
use crate::firstboot::run::FirstbootStatus;
use crate::network::inspect::NetworkSummary;
use clap::{Parser, Subcommand};
use keel_supervisor::control::{Client, Command, ExecResult, LogsResult, Status, DEFAULT_SOCKET};
use keel_supervisor::manager::desired::{self, DeclarationFile};
use keel_supervisor::manager::{ContainerDetail, ContainerInfo, ContainerStats};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Operate a keel host.
#[derive(Debug, Parser)]
#[command(name = "keelctl", version, about = "Operate a keel host over its control channel")]
pub struct Cli {
    /// Control socket to talk to (default /run/keel/control.sock).
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// A host's remote API, HOST[:PORT] (port 50000 by default), over TLS with a client certificate.
    #[arg(long, global = true)]
    host: Option<String>,
    /// With --host: PEM of the CA that signed the host's server certificate.
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
    /// With --host: the server certificate's SHA-256 as the host's console shows it (instead of --ca).
    #[arg(long, global = true)]
    fingerprint: Option<String>,
    /// With --host: client certificate (PEM); its subject O= is the role (admin, read-only).
    #[arg(long, global = true)]
    cert: Option<PathBuf>,
    /// With --host: the client certificate's key (PEM).
    #[arg(long, global = true)]
    key: Option<PathBuf>,
    /// A context of the keelctl config file ($KEELCONFIG or ~/.config/keel/keelctl.toml) instead of the current one.
    #[arg(long, global = true)]
    context: Option<String>,
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
    /// Run a command on the host, or in container NAME; exits with its exit code.
    /// With -i or -t, or when stdin is a pipe or a file, its stdin, stdout and stderr
    /// stream (e.g. `tar c . | keelctl exec web -- tar x`).
    Exec {
        /// Kill the command after this many seconds (default: 120 without a stream, never with one).
        #[arg(long = "kill-after")]
        kill_after: Option<u64>,
        /// Stream stdin even from a terminal.
        #[arg(short, long)]
        interactive: bool,
        /// Give the command a terminal (a pty in the container's own /dev/pts), sized
        /// and resized as the local one; the local terminal is raw meanwhile.
        #[arg(short, long)]
        tty: bool,
        /// Run inside this container (its namespaces, cgroup and restrictions).
        name: Option<String>,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
    /// List the containers: state, pid, restarts, uptime, last exit, health.
    Ps,
    /// Show one container in detail.
    Inspect {
        /// Container name.
        name: String,
    },
    /// Show a container's log.
    Logs {
        /// Container name.
        name: String,
        /// Keep printing new lines as they are written (pushed on one connection).
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
    },
    /// Start a stopped container.
    Start {
        /// Container name.
        name: String,
    },
    /// Stop a container (its stop signal, SIGKILL after its stop_timeout).
    Stop {
        /// Container name.
        name: String,
    },
    /// Stop, then start a container.
    Restart {
        /// Container name.
        name: String,
    },
    /// CPU, memory and pids of a running container, from its cgroup.
    Stats {
        /// Container name.
        name: String,
    },
    /// Validate declaration files (with those on the host), write them into
    /// /etc/keel/containers and reconcile: new containers start, changed ones restart
    /// (with their started/healthy dependents), unchanged ones are not touched.
    Apply {
        /// NAME.toml files (the file name is the container's name).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show what `apply` would do with these files (add, change with the keys,
    /// restart-dependent, unchanged); nothing is written.
    Diff {
        /// NAME.toml files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Stop a container and remove its declaration.
    Rm {
        /// Container name.
        name: String,
        /// Also delete its state: log files and state directory (writable layer).
        #[arg(long)]
        purge: bool,
    },
    /// Re-read /etc/keel/network.toml (applied live, as `network reload`), then
    /// /etc/keel/containers (after an edit by hand) and reconcile like apply.
    Reload {
        /// Stop the containers of networks being changed or removed, and start them
        /// again once the change is made (without it, such a change is refused).
        #[arg(long)]
        restart_attached: bool,
    },
    /// Host, container and keel figures in Prometheus' text format (as GET /metrics on the API port).
    Metrics,
    /// Container networks.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// What the first-boot config did (exits 1 when it failed).
    Firstboot,
    /// Container images in the host's store.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Contexts of the keelctl config file: hosts and the certificates to reach them with.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Add (or replace) a context from --host and --ca/--fingerprint, --cert, --key; the first one becomes current.
    Add {
        /// Context name.
        name: String,
    },
    /// Make a context the current one.
    Use {
        /// Context name.
        name: String,
    },
    /// List the contexts (* marks the current one).
    Ls,
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// List the images: manifest, layers, size, names.
    Ls,
    /// Show an image's defaults and each layer with what it adds, changes and removes.
    Inspect {
        /// A name (e.g. the reference a container uses) or a manifest digest.
        reference: String,
    },
    /// Import an archive or OCI layout that is on the host (oci-archive:F, docker-archive:F, oci:DIR[:TAG], or F).
    /// Shows progress; Ctrl-C stops watching, not the load.
    Load {
        /// The file (a path on the keel host).
        file: String,
    },
    /// Pull an image from a registry into the store (https; see /etc/keel/registries.toml for http).
    /// Shows progress per layer; Ctrl-C stops watching, not the pull (see `keelctl image jobs`).
    Pull {
        /// REGISTRY/REPO:TAG or REPO@sha256:…
        reference: String,
    },
    /// Remove an image name.
    Rm {
        /// A name or manifest digest.
        reference: String,
    },
    /// Delete blobs and layers that no name and no declared container uses.
    Prune,
    /// Running and recently finished image jobs: id, kind, state, age, progress, target.
    Jobs,
}

#[derive(Debug, Subcommand)]
enum NetworkCommand {
    /// List the networks.
    Ls,
    /// Show one network: bridge, addresses, containers, published ports, uplink lease.
    Inspect {
        /// Network name.
        name: String,
    },
    /// Re-read /etc/keel/network.toml and apply what changed, live: new networks and
    /// firewall changes at once; a network in use is changed or removed only with
    /// --restart-attached. Prints what changed.
    Reload {
        /// Stop the containers of networks being changed or removed, and start them
        /// again once the change is made (without it, such a change is refused).
        #[arg(long)]
        restart_attached: bool,
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

/// How long keelctl waits for the next line of a pull or load (a job's own deadline is an hour).
const JOB_LINE_WAIT: Duration = Duration::from_secs(3600);

/// `image pull | load`: follow the job's progress until its reply.
fn follow_job(client: &mut Client, command: Command, json: bool) -> Result<i32, String> {
    use crate::progress_view::{Mode, Viewer};
    use std::io::IsTerminal;
    let mode = if json {
        Mode::Json
    } else if std::io::stdout().is_terminal() {
        Mode::Bar
    } else {
        Mode::Lines
    };
    let mut viewer = Viewer::new(std::io::stdout(), mode);
    let mut announced = false;
    let response = client
        .request_with_progress(command, JOB_LINE_WAIT, &mut |line| {
            viewer.on_line(line, std::time::Instant::now());
            if let (false, Some(job), false) = (announced, viewer.job(), json) {
                announced = true;
                eprintln!("job {job} (Ctrl-C stops watching; the job goes on: keelctl image jobs)");
            }
        })
        .map_err(|e| e.to_string())?;
    match (response.ok, json) {
        (true, true) => println!("{}", serde_json::json!({ "event": "done", "result": response.result })),
        (true, false) => println!("{}", response.result.as_ref().and_then(|r| r.as_str()).unwrap_or("ok")),
        (false, true) => {
            println!("{}", serde_json::json!({ "event": "failed", "error": response.error }));
            return Ok(1);
        }
        (false, false) => return Err(response.error.unwrap_or_else(|| "failed".into())),
    }
    Ok(0)
}

/// The `keelctl image jobs` table.
fn jobs_table(jobs: &[keel_supervisor::worker::JobInfo]) -> String {
    use crate::progress_view::size;
    let mut out = format!("{:<4} {:<9} {:<8} {:>7}  {:<28} {}\n", "ID", "KIND", "STATE", "AGE", "PROGRESS", "TARGET");
    for job in jobs {
        let done: u64 = job.items.iter().map(|i| i.progress.done).sum();
        let total: u64 = job.items.iter().filter_map(|i| i.progress.total).sum();
        let rate: f64 = job.items.iter().filter(|i| i.progress.total != Some(i.progress.done)).map(|i| i.rate).sum();
        let progress = match (job.items.len(), total) {
            (0, _) => "-".to_string(),
            (n, 0) => format!("{} ({n} items)", size(done)),
            (n, total) if rate > 0.0 && job.state == keel_supervisor::worker::JobState::Running => {
                format!("{}/{} ({n}) {}/s", size(done), size(total), size(rate as u64))
            }
            (n, total) => format!("{}/{} ({n})", size(done), size(total)),
        };
        let state = serde_json::to_value(job.state).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        out.push_str(&format!(
            "{:<4} {:<9} {:<8} {:>7}  {:<28} {}\n",
            job.id,
            job.kind,
            state,
            short_duration(job.age_secs),
            progress,
            job.target
        ));
        if let Some(error) = &job.error {
            out.push_str(&format!("     error: {error}\n"));
        }
    }
    out
}

/// The `--host` options as a context (None without `--host`).
fn host_context(cli: &Cli) -> Option<Context> {
    Some(Context {
        host: cli.host.clone()?,
        ca: cli.ca.clone(),
        fingerprint: cli.fingerprint.clone(),
        cert: cli.cert.clone(),
        key: cli.key.clone(),
    })
}

/// `keelctl config add|use|ls`.
fn run_config(cli: &Cli, command: &ConfigCommand) -> Result<i32, String> {
    let path = remote::config_path();
    let mut config = remote::load_config(&path).map_err(|e| e.to_string())?;
    match command {
        ConfigCommand::Add { name } => {
            let mut context = host_context(cli).ok_or("config add needs --host (and --ca or --fingerprint, --cert, --key)")?;
            remote::absolute(&mut context);
            config.contexts.insert(name.clone(), context);
            if config.current.is_none() {
                config.current = Some(name.clone());
            }
        }
        ConfigCommand::Use { name } => {
            if !config.contexts.contains_key(name) {
                return Err(format!("{}: no context named {name}", path.display()));
            }
            config.current = Some(name.clone());
        }
        ConfigCommand::Ls => {
            println!("  {:<16} {:<28} AUTH", "NAME", "HOST");
            for (name, c) in &config.contexts {
                let mark = if config.current.as_deref() == Some(name.as_str()) { "*" } else { " " };
                let trust = if c.ca.is_some() { "ca" } else { "fingerprint" };
                let cert = c.cert.as_ref().map_or("no certificate".into(), |p| p.display().to_string());
                println!("{mark} {name:<16} {:<28} {trust}, {cert}", c.host);
            }
            return Ok(0);
        }
    }
    remote::save_config(&path, &config).map_err(|e| e.to_string())?;
    Ok(0)
}

/// The channel to talk over: `--host`, else `--socket`, else `--context` or the config
/// file's current context, else the local control socket.
fn connect(cli: &Cli, timeout: Duration) -> Result<Client, String> {
    if let Some(context) = host_context(cli) {
        return remote::connect(&context, timeout).map_err(|e| e.to_string());
    }
    if let Some(socket) = &cli.socket {
        return Client::connect(socket).map_err(|e| e.to_string());
    }
    let path = remote::config_path();
    let config =
        if cli.context.is_some() || path.exists() { remote::load_config(&path).map_err(|e| e.to_string())? } else { Default::default() };
    match cli.context.as_ref().or(config.current.as_ref()) {
        Some(name) => {
            let context = config.contexts.get(name).ok_or_else(|| format!("{}: no context named {name}", path.display()))?;
            remote::connect(context, timeout).map_err(|e| e.to_string())
        }
        None => Client::connect(std::path::Path::new(DEFAULT_SOCKET)).map_err(|e| e.to_string()),
    }
}

fn run(cli: Cli) -> Result<i32, String> {
    if let CtlCommand::Config(command) = &cli.command {
        return run_config(&cli, command);
    }
    let timeout = Duration::from_secs(cli.timeout);
    let mut client = connect(&cli, timeout)?;
    match &cli.command {
        CtlCommand::Exec { kill_after, interactive, tty, name, argv } if *interactive || *tty || crate::ctl_stream::stdin_is_data() => {
            let send_stdin = *interactive || *tty || crate::ctl_stream::stdin_is_data();
            return crate::ctl_stream::exec(client, argv.clone(), name.clone(), *tty, send_stdin, *kill_after, timeout)
                .map_err(|e| e.to_string());
        }
        CtlCommand::Logs { name, follow: true, tail } => {
            return crate::ctl_stream::follow_logs(client, name.clone(), *tail, timeout).map_err(|e| e.to_string());
        }
        CtlCommand::Image(ImageCommand::Pull { reference }) => {
            return follow_job(&mut client, Command::ImagePull { reference: reference.clone(), progress: true }, cli.json)
        }
        CtlCommand::Image(ImageCommand::Load { file }) => {
            return follow_job(&mut client, Command::ImageLoad { source: file.clone(), progress: true }, cli.json)
        }
        _ => {}
    }
    let mut call = |command: Command, wait: Duration| client.call(command, wait).map_err(|e| e.to_string());
    let named = |name: &String| name.clone();
    let result = match &cli.command {
        CtlCommand::Status => call(Command::Status, timeout)?,
        CtlCommand::Poweroff => call(Command::Poweroff, timeout)?,
        CtlCommand::Reboot => call(Command::Reboot, timeout)?,
        CtlCommand::Exec { kill_after, name, argv, .. } => {
            let kill_after = kill_after.unwrap_or(keel_supervisor::control::DEFAULT_EXEC_TIMEOUT_SECS);
            call(
                Command::Exec { argv: argv.clone(), timeout_secs: Some(kill_after), container: name.clone() },
                timeout.max(Duration::from_secs(kill_after + 5)),
            )?
        }
        CtlCommand::Ps => call(Command::Ps, timeout)?,
        CtlCommand::Apply { files } => call(Command::Apply { files: declaration_files(files)? }, timeout)?,
        CtlCommand::Diff { files } => call(Command::Diff { files: declaration_files(files)? }, timeout)?,
        CtlCommand::Rm { name, purge } => call(Command::Rm { name: named(name), purge: *purge }, timeout)?,
        CtlCommand::Reload { restart_attached } => call(Command::Reload { restart_attached: *restart_attached }, timeout)?,
        CtlCommand::Inspect { name } => call(Command::Inspect { name: named(name) }, timeout)?,
        CtlCommand::Start { name } => call(Command::Start { name: named(name) }, timeout)?,
        CtlCommand::Stop { name } => call(Command::Stop { name: named(name) }, timeout)?,
        CtlCommand::Restart { name } => call(Command::Restart { name: named(name) }, timeout)?,
        CtlCommand::Stats { name } => call(Command::Stats { name: named(name) }, timeout)?,
        CtlCommand::Metrics => call(Command::Metrics, timeout)?,
        CtlCommand::Network(NetworkCommand::Ls) => call(Command::NetworkLs, timeout)?,
        CtlCommand::Firstboot => call(Command::Firstboot, timeout)?,
        CtlCommand::Network(NetworkCommand::Inspect { name }) => call(Command::NetworkInspect { name: named(name) }, timeout)?,
        CtlCommand::Network(NetworkCommand::Reload { restart_attached }) => {
            call(Command::NetworkReload { restart_attached: *restart_attached }, timeout)?
        }
        CtlCommand::Image(ImageCommand::Ls) => call(Command::ImageLs, timeout)?,
        CtlCommand::Image(ImageCommand::Inspect { reference }) => call(Command::ImageInspect { reference: reference.clone() }, timeout)?,
        CtlCommand::Image(ImageCommand::Jobs) => call(Command::ImageJobs, timeout)?,
        CtlCommand::Image(ImageCommand::Load { .. } | ImageCommand::Pull { .. }) => unreachable!("followed above"),
        CtlCommand::Image(ImageCommand::Rm { reference }) => call(Command::ImageRm { reference: reference.clone() }, timeout)?,
        CtlCommand::Image(ImageCommand::Prune) => call(Command::ImagePrune, timeout)?,
        CtlCommand::Config(_) => unreachable!("answered before connecting"),
        CtlCommand::Logs { name, tail, .. } => {
            let result = call(Command::Logs { name: name.clone(), tail: *tail, offset: None }, timeout)?;
            let logs: LogsResult = decode(result.clone())?;
            if cli.json {
                println!("{result}");
            } else {
                let mut out = std::io::stdout().lock();
                for line in &logs.lines {
                    let _ = writeln!(out, "{line}");
                }
                let _ = out.flush();
            }
            return Ok(0);
        }
    };
    if cli.json {
        println!("{result}");
        if let CtlCommand::Exec { .. } = cli.command {
            return Ok(result.get("exit_code").and_then(|c| c.as_i64()).unwrap_or(1) as i32);
        }
        return Ok(0);
    }
    match cli.command {
        CtlCommand::Status => print_status(decode(result)?),
        CtlCommand::Exec { .. } => {
            let exec: ExecResult = decode(result)?;
            let _ = std::io::stdout().write_all(exec.stdout.as_bytes());
            let _ = std::io::stderr().write_all(exec.stderr.as_bytes());
            return Ok(exec.exit_code);
        }
        CtlCommand::Ps => print_ps(&decode::<Vec<ContainerInfo>>(result)?),
        CtlCommand::Apply { .. } | CtlCommand::Diff { .. } | CtlCommand::Rm { .. } | CtlCommand::Reload { .. } => {
            print_reconcile(&decode(result)?)
        }
        CtlCommand::Inspect { .. } => print_inspect(&decode(result)?),
        CtlCommand::Stats { .. } => print_stats(&decode(result)?),
        CtlCommand::Metrics => print!("{}", crate::metrics::render(&decode(result)?)),
        CtlCommand::Network(NetworkCommand::Ls) => print_networks(&decode::<Vec<NetworkSummary>>(result)?),
        CtlCommand::Network(NetworkCommand::Inspect { .. }) => print_fields(&result),
        CtlCommand::Network(NetworkCommand::Reload { .. }) => {
            for line in decode::<crate::network::reload::NetworkReloadReport>(result)?.lines() {
                println!("{line}");
            }
        }
        CtlCommand::Firstboot => return Ok(print_firstboot(&decode(result)?)),
        CtlCommand::Image(ImageCommand::Ls) => {
            crate::images::print_ls(&decode::<Vec<keel_supervisor::image::inspect::ImageSummary>>(result)?)
        }
        CtlCommand::Image(ImageCommand::Inspect { .. }) => crate::images::print_inspect(&decode(result)?),
        CtlCommand::Image(ImageCommand::Jobs) => print!("{}", jobs_table(&decode::<Vec<keel_supervisor::worker::JobInfo>>(result)?)),
        _ => println!("{}", result.as_str().unwrap_or("ok")),
    }
    Ok(0)
}

/// The files of `apply`/`diff`, read here and sent in the request (each at most
/// [`desired::MAX_FILE_BYTES`]; the whole request must fit one control line).
fn declaration_files(paths: &[PathBuf]) -> Result<Vec<DeclarationFile>, String> {
    use std::io::Read;
    let mut files = Vec::new();
    let mut total = 0;
    for path in paths {
        let mut text = String::new();
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        file.take(desired::MAX_FILE_BYTES as u64 + 1).read_to_string(&mut text).map_err(|e| format!("{}: {e}", path.display()))?;
        if text.len() > desired::MAX_FILE_BYTES {
            return Err(format!("{}: larger than {} bytes; not a declaration", path.display(), desired::MAX_FILE_BYTES));
        }
        total += text.len() + path.as_os_str().len();
        files.push(DeclarationFile { path: path.display().to_string(), text });
    }
    // JSON escaping can grow the text; leave room for it under the line bound.
    if total > keel_supervisor::control::MAX_LINE / 2 {
        return Err(format!("{total} bytes of declarations in one request; apply fewer files at a time"));
    }
    Ok(files)
}

fn print_reconcile(report: &crate::reconcile::ReconcileReport) {
    print!("{}", report.plan.to_text());
    for file in &report.files {
        println!("file {file}");
    }
    if let Some(networks) = &report.networks {
        println!("{networks}");
    }
}

fn decode<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, String> {
    serde_json::from_value(value).map_err(|e| format!("unexpected answer from keel: {e}"))
}

/// `1h02m`, `3m04s`, `12.5s`: short enough for a ps column.
fn short_duration(secs: f64) -> String {
    let whole = secs as u64;
    match whole {
        0..=59 => format!("{secs:.1}s"),
        60..=3599 => format!("{}m{:02}s", whole / 60, whole % 60),
        _ => format!("{}h{:02}m", whole / 3600, (whole % 3600) / 60),
    }
}

fn print_ps(containers: &[ContainerInfo]) {
    print!("{}", ps_table(containers));
}

/// The `keelctl ps` table: one padded row per container, DETAIL last and unpadded.
fn ps_table(containers: &[ContainerInfo]) -> String {
    let dash = || "-".to_string();
    let rows: Vec<[String; 9]> = containers
        .iter()
        .map(|c| {
            [
                c.name_cell(),
                c.state.clone(),
                c.pid.map_or_else(dash, |p| p.to_string()),
                c.restarts.to_string(),
                c.uptime_secs.map_or_else(dash, short_duration),
                c.last_exit.map_or_else(dash, |e| e.to_string()),
                c.health.clone().unwrap_or_else(dash),
                c.limits_hit().unwrap_or_else(dash),
                c.detail.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let header = ["NAME", "STATE", "PID", "RESTARTS", "UPTIME", "LAST-EXIT", "HEALTH", "LIMITS", "DETAIL"].map(String::from);
    let mut widths = [0usize; 9];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut table = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row.iter().zip(widths).take(8).map(|(cell, w)| format!("{cell:<w$}")).collect();
        table.push_str(format!("{}  {}", cells.join("  "), row[8]).trim_end());
        table.push('\n');
    }
    table
}

fn print_inspect(detail: &ContainerDetail) {
    print_fields(&serde_json::to_value(detail).unwrap_or_default());
}

fn print_firstboot(status: &FirstbootStatus) -> i32 {
    println!("state:  {}", status.state);
    println!("source: {}", status.source.as_deref().unwrap_or("-"));
    if let Some([files, dirs, links, users]) = status.written {
        println!("wrote:  {files} file(s), {dirs} director(ies), {links} link(s), {users} user(s)");
    }
    for p in &status.problems {
        let place = if p.line > 0 { format!(" (line {}, column {})", p.line, p.column) } else { String::new() };
        println!("{} {}{place}: {}", p.severity.to_uppercase(), p.path, p.message);
    }
    i32::from(status.failed())
}

fn print_networks(networks: &[NetworkSummary]) {
    println!("{:<12} {:<12} {:<18} {:<15} {:<8} CONTAINERS", "NAME", "BRIDGE", "SUBNET", "GATEWAY", "ISOLATED");
    for n in networks {
        println!("{:<12} {:<12} {:<18} {:<15} {:<8} {}", n.name, n.bridge, n.subnet, n.gateway, n.isolated, n.containers);
    }
}

/// One `key value` line per field of a JSON object.
fn print_fields(value: &serde_json::Value) {
    if let Some(map) = value.as_object() {
        for (key, value) in map {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => "-".into(),
                other => other.to_string(),
            };
            println!("{key:<16} {text}");
        }
    }
}

fn print_stats(stats: &ContainerStats) {
    let c = &stats.cgroup;
    println!("name:       {}", stats.name);
    println!("cpu:        {:.3} s", c.cpu_usage_usec as f64 / 1e6);
    println!("memory:     {} KiB (peak {})", c.memory_current / 1024, c.memory_peak.map_or("-".into(), |p| format!("{} KiB", p / 1024)));
    println!("pids:       {}", c.pids_current);
    println!("oom kills:  {}", stats.oom_kills);
    println!("pids limit: {} fork(s) refused", c.pids_limit_hits);
}

/// The `watchdog:` line of `keelctl status`.
fn watchdog_line(watchdog: Option<&keel_supervisor::control::WatchdogStatus>) -> String {
    match watchdog {
        Some(w) => format!("{} ({}), timeout {} s", w.device, w.identity, w.timeout_secs),
        None => "none".to_string(),
    }
}

fn print_status(status: Status) {
    println!("hostname:  {}", status.hostname);
    println!("state:     {}", status.state);
    println!("uptime:    {:.1} s", status.uptime_secs);
    println!("pid 1 rss: {} KiB", status.pid1_rss_kib);
    println!("watchdog:  {}", watchdog_line(status.watchdog.as_ref()));
    if status.boot_errors.is_empty() {
        println!("boot errors: none");
    } else {
        println!("boot errors:");
        for problem in status.boot_errors {
            println!("  - {problem}");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn jobs_table_shows_progress_and_errors() {
        use keel_supervisor::worker::{ItemInfo, JobId, JobInfo, JobKind, JobState, Progress};
        let item = |done, total| ItemInfo {
            progress: Progress { item: "abc".into(), phase: "download".into(), done, total: Some(total) },
            rate: 1048576.0,
        };
        let jobs = vec![
            JobInfo {
                id: JobId(3),
                kind: JobKind::Pull,
                target: "r:5000/app:1".into(),
                state: JobState::Running,
                error: None,
                items: vec![item(1 << 20, 4 << 20), item(0, 4 << 20)],
                age_secs: 12.0,
                run_secs: 12.0,
            },
            JobInfo {
                id: JobId(2),
                kind: JobKind::Load,
                target: "/x.tar".into(),
                state: JobState::Failed,
                error: Some("load /x.tar (job 2): no space left on /var".into()),
                items: vec![],
                age_secs: 70.0,
                run_secs: 3.0,
            },
        ];
        let table = jobs_table(&jobs);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[1].starts_with("3    pull      running")
                && lines[1].contains("1.0 MiB/8.0 MiB (2) 2.0 MiB/s")
                && lines[1].ends_with("r:5000/app:1"),
            "{table}"
        );
        assert!(
            lines[2].starts_with("2    load      failed") && lines[3].contains("error: load /x.tar (job 2): no space left on /var"),
            "{table}"
        );
    }

    use super::*;

    fn info(name: &str, state: &str, pids_limit_hits: u64, oom_killed: u64) -> ContainerInfo {
        ContainerInfo {
            name: name.into(),
            state: state.into(),
            pid: None,
            restarts: 0,
            uptime_secs: None,
            last_exit: Some(137),
            health: None,
            detail: None,
            pids_limit_hits,
            oom_killed,
            privileged: None,
        }
    }

    #[test]
    fn ps_marks_a_privileged_container() {
        let admin = ContainerInfo { privileged: Some("privileged,host-pid".into()), ..info("admin", "running", 0, 0) };
        let table = ps_table(&[admin, info("web", "running", 0, 0)]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[1].starts_with("admin [PRIV] "), "{table}");
        assert!(lines[2].starts_with("web ") && !lines[2].contains("PRIV"), "{table}");
    }

    #[test]
    fn ps_shows_the_limits_a_container_hit() {
        let table = ps_table(&[info("runaway", "exited", 1285, 3), info("calm", "running", 0, 0)]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        let column = lines[0].find("LIMITS").unwrap();
        assert_eq!(&lines[1][column..], "pids-limit-hit:1285,oom-killed:3");
        assert_eq!(&lines[2][column..], "-");
    }

    #[test]
    fn status_names_the_watchdog_or_none() {
        use keel_supervisor::control::WatchdogStatus;
        let armed = WatchdogStatus { device: "/dev/watchdog0".into(), identity: "i6300ESB timer".into(), timeout_secs: 30 };
        assert_eq!(watchdog_line(Some(&armed)), "/dev/watchdog0 (i6300ESB timer), timeout 30 s");
        assert_eq!(watchdog_line(None), "none");
    }
}
