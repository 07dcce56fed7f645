//! The `keel-build` command: `build` an image from host.toml, or `run` it in QEMU.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use keel_build::build::{sha256_file, BuildOutput};
use keel_build::qemu::{Accel, HostFwd, QemuConfig, DEFAULT_MEMORY_MB};
use keel_build::run::{default_out_dir, run_qemu, RunError};
use keel_build::{build, BuildError, BuildOptions, HostError, HostSpec};

/// Builds keel host images from host.toml and boots them in QEMU.
#[derive(Debug, Parser)]
#[command(name = "keel-build", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build vmlinuz, initramfs.img and cmdline into a directory.
    Build {
        /// The host spec.
        host: PathBuf,
        /// The output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Build, then boot the image in QEMU with the serial console on stdout.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The host spec.
    host: PathBuf,
    /// The output directory [default: target/keel-run/HOSTNAME or $TMPDIR/keel-run-HOSTNAME].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Unix socket on which QEMU serves the guest's control port (org.keel.control).
    #[arg(long)]
    control_socket: Option<PathBuf>,
    /// Forward a host port to the guest: tcp:HOSTPORT-:GUESTPORT (repeatable).
    #[arg(long, value_name = "tcp:HOSTPORT-:GUESTPORT")]
    hostfwd: Vec<HostFwd>,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = DEFAULT_MEMORY_MB, value_parser = clap::value_parser!(u32).range(64..))]
    memory: u32,
    /// Exit when the guest reboots or panics instead of rebooting it.
    #[arg(long)]
    no_reboot: bool,
}

/// Everything that can make keel-build fail.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Run(#[from] RunError),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("keel-build: {err}");
            ExitCode::from(1)
        }
    }
}

fn dispatch(command: Command) -> Result<ExitCode, CliError> {
    match command {
        Command::Build { host, out } => {
            let output = build_image(&host, &out)?;
            print!("{}", describe(&output)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => run(args),
    }
}

fn build_image(host: &Path, out: &Path) -> Result<BuildOutput, CliError> {
    let spec = HostSpec::load(host)?;
    let options = BuildOptions::from_env()?;
    Ok(build(&spec, &options, out)?)
}

/// The lines printed after a build.
fn describe(output: &BuildOutput) -> Result<String, CliError> {
    let sha = sha256_file(&output.initramfs)?;
    Ok(format!(
        "vmlinuz    {}\ninitramfs  {}\ncmdline    {}\nsha256     {sha}  {}\n",
        output.vmlinuz.display(),
        output.initramfs.display(),
        output.cmdline,
        output.initramfs.display(),
    ))
}

fn run(args: RunArgs) -> Result<ExitCode, CliError> {
    let spec = HostSpec::load(&args.host)?;
    let out = match args.out {
        Some(out) => out,
        None => {
            let exe = std::env::current_exe().unwrap_or_default();
            default_out_dir(spec.hostname.as_str(), &exe, &std::env::temp_dir())
        }
    };
    let options = BuildOptions::from_env()?;
    let output = build(&spec, &options, &out)?;
    // stdout carries the guest's console; our own messages go to stderr.
    eprint!("{}", describe(&output)?);
    let mut config = QemuConfig::new(output.vmlinuz, output.initramfs, output.cmdline);
    config.memory_mb = args.memory;
    config.control_socket = args.control_socket;
    config.qmp_socket = Some(out.join("qmp.sock"));
    config.hostfwd = args.hostfwd;
    config.no_reboot = args.no_reboot;
    config.accel = Accel::from_env();
    let code = run_qemu(&config)?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_arguments_parse() {
        let cli = Cli::try_parse_from([
            "keel-build",
            "run",
            "h.toml",
            "--hostfwd",
            "tcp:8080-:80",
            "--hostfwd",
            "tcp:2222-:22",
            "--memory",
            "1024",
            "--control-socket",
            "/tmp/c.sock",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!(args.hostfwd.len(), 2);
        assert_eq!(args.memory, 1024);
        assert_eq!(
            args.control_socket.as_deref(),
            Some(Path::new("/tmp/c.sock"))
        );
        let err = Cli::try_parse_from(["keel-build", "run", "h.toml", "--hostfwd", "8080:80"])
            .unwrap_err();
        assert!(err.to_string().contains("tcp:HOSTPORT-:GUESTPORT"), "{err}");
    }
}
