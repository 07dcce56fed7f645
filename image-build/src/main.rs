//! The `keel-build` command: `build` an image from host.toml, `run` it in QEMU, or
//! make a data disk for a persistent /var (`disk-var`).

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use keel_build::build::{sha256_file, BuildOutput};
use keel_build::disk::{parse_size, DiskError, VarDisk, VAR_LABEL};
use keel_build::diskimage::{build_disk, DiskFormat, DiskImageError};
use keel_build::qemu::{Accel, HostFwd, QemuConfig, UefiBoot, DEFAULT_MEMORY_MB};
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
    /// Create a data disk for a persistent /var: a sparse raw file holding an ext4
    /// filesystem labelled keel-var (needs mkfs.ext4 from e2fsprogs). Reproducible
    /// when SOURCE_DATE_EPOCH is set.
    DiskVar {
        /// The disk image file to create (replaced if it exists).
        #[arg(long)]
        out: PathBuf,
        /// Its size: bytes or a number with K, M, G or T (binary units).
        #[arg(long, default_value = "512M", value_parser = parse_size)]
        size: u64,
    },
    /// Build one UEFI disk image: GPT with an EFI system partition (unified kernel image
    /// at \\EFI\\BOOT\\BOOTX64.EFI), the OS as a read-only erofs in keel-root-a, an empty
    /// keel-root-b and an ext4 keel-var for /var. Rootless and reproducible (needs
    /// erofs-utils, dosfstools, mtools, e2fsprogs, binutils, systemd-boot-efi, and
    /// qemu-utils for qcow2/vhd).
    Disk {
        /// The host spec.
        host: PathBuf,
        /// The output directory; the image is DIR/disk.FORMAT.
        #[arg(long)]
        out: PathBuf,
        /// raw, qcow2 or vhd (fixed).
        #[arg(long, default_value = "raw")]
        format: DiskFormat,
        /// The disk's size: bytes or a number with K, M, G or T; /var takes what the
        /// other partitions leave, and grows at boot when the disk is larger.
        #[arg(long, default_value = "4G", value_parser = parse_size)]
        size: u64,
    },
    /// Check a first-boot config (Ignition spec 3.x JSON) offline, with the parser and
    /// validator keel runs at first boot: every problem with its JSON path, line and
    /// column. Exit 0 when valid (warnings allowed), 1 when not.
    Validate {
        /// The config file.
        config: PathBuf,
        /// Print the report as JSON: {"valid", "errors", "warnings", "problems": [{"path",
        /// "line", "column", "severity", "message"}]}, the form keel writes to
        /// /run/keel/firstboot.json.
        #[arg(long)]
        json: bool,
    },
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
    /// Attach FILE as a virtio-blk data disk (raw); keel mounts it on /var. Created
    /// first (512 MiB, ext4, label keel-var) when it does not exist.
    #[arg(long, value_name = "FILE")]
    disk: Option<PathBuf>,
    /// Pass an Ignition config to the guest by QEMU fw_cfg (opt/com.coreos/config).
    #[arg(long, value_name = "CONFIG.ign")]
    config: Option<PathBuf>,
    /// Boot this disk image (from `keel-build disk`; raw, qcow2 or vhd) under UEFI
    /// (Debian's OVMF) instead of building and booting the kernel and initramfs.
    #[arg(long, value_name = "FILE", conflicts_with = "disk")]
    disk_image: Option<PathBuf>,
}

/// Everything that can make keel-build fail.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Declarations(#[from] keel_build::declarations::DeclarationErrors),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error(transparent)]
    DiskImage(#[from] DiskImageError),
    #[error("disk image {}: {source}", path.display())]
    DiskImageFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config {}: {source}", path.display())]
    Config {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
        Command::DiskVar { out, size } => {
            let disk = VarDisk { size, ..VarDisk::from_env() };
            disk.create(&out)?;
            println!("{}", describe_disk(&out, &disk));
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { config, json } => Ok(validate(&config, json)),
        Command::Disk { host, out, format, size } => {
            let spec = HostSpec::load(&host)?;
            keel_build::declarations::check(&spec)?;
            let options = BuildOptions::from_env()?;
            let output = build_disk(&spec, &options, format, size, &out)?;
            let sha = sha256_file(&output.image).map_err(CliError::Build)?;
            let stored = std::fs::metadata(&output.image).map(|m| m.len()).unwrap_or(0);
            println!(
                "disk image {} ({}, {} MiB virtual, {} MiB file)",
                output.image.display(),
                format.name(),
                output.size >> 20,
                stored >> 20
            );
            println!("erofs root {} KiB, unified kernel image {} KiB", output.root_size >> 10, output.uki_size >> 10);
            println!("cmdline    {}", output.cmdline);
            println!("sha256     {sha}  {}", output.image.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `keel-build validate [--json] CONFIG`: the report on stdout (one line per problem,
/// or JSON), exit 0 valid, 1 invalid.
fn validate(path: &Path, json: bool) -> ExitCode {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("keel-build: {}: {e}", path.display());
            return ExitCode::from(1);
        }
    };
    let (report, valid) = match keel_init::firstboot::config::parse(&text) {
        Ok((_, warnings)) => (warnings, true),
        Err(report) => (report, false),
    };
    if json {
        println!("{}", keel_init::firstboot::config::report_json(&report));
        return if valid { ExitCode::SUCCESS } else { ExitCode::from(1) };
    }
    for line in report.to_string().lines() {
        println!("{}: {line}", path.display());
    }
    if valid {
        println!("{}: valid ({} warning(s))", path.display(), report.problems.len());
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn build_image(host: &Path, out: &Path) -> Result<BuildOutput, CliError> {
    let spec = HostSpec::load(host)?;
    keel_build::declarations::check(&spec)?;
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

/// The line printed after a data disk was made.
fn describe_disk(path: &Path, disk: &VarDisk) -> String {
    format!("data disk  {} ({} MiB, ext4, label {VAR_LABEL})", path.display(), disk.size >> 20)
}

fn run(args: RunArgs) -> Result<ExitCode, CliError> {
    if let Some(path) = &args.config {
        // QEMU would refuse a missing file too, but after the build and less clearly.
        std::fs::File::open(path).map_err(|source| CliError::Config { path: path.clone(), source })?;
    }
    let spec = HostSpec::load(&args.host)?;
    let out = match args.out.clone() {
        Some(out) => out,
        None => {
            let exe = std::env::current_exe().unwrap_or_default();
            default_out_dir(spec.hostname.as_str(), &exe, &std::env::temp_dir())
        }
    };
    if let Some(image) = &args.disk_image {
        return run_disk_image(&args, image, &out);
    }
    let options = BuildOptions::from_env()?;
    let output = build(&spec, &options, &out)?;
    // stdout carries the guest's console; our own messages go to stderr.
    eprint!("{}", describe(&output)?);
    if let Some(path) = &args.disk {
        let disk = VarDisk::from_env();
        if disk.ensure(path)? {
            eprintln!("{}", describe_disk(path, &disk));
        }
    }
    let mut config = QemuConfig::new(output.vmlinuz, output.initramfs, output.cmdline);
    config.memory_mb = args.memory;
    config.control_socket = args.control_socket;
    config.qmp_socket = Some(out.join("qmp.sock"));
    config.hostfwd = args.hostfwd;
    config.no_reboot = args.no_reboot;
    config.disk = args.disk;
    config.fw_cfg_config = args.config;
    config.accel = Accel::from_env();
    let code = run_qemu(&config)?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// `keel-build run --disk-image FILE`: boot the image under OVMF (no build); the
/// firmware's variable store is kept in the output directory.
fn run_disk_image(args: &RunArgs, image: &Path, out: &Path) -> Result<ExitCode, CliError> {
    std::fs::File::open(image).map_err(|source| CliError::DiskImageFile { path: image.to_path_buf(), source })?;
    std::fs::create_dir_all(out).map_err(|source| CliError::DiskImageFile { path: out.to_path_buf(), source })?;
    let format = DiskFormat::detect(image);
    let uefi = UefiBoot::ovmf(image.to_path_buf(), format.qemu_name(), out.join("OVMF_VARS.fd"))
        .map_err(|source| CliError::DiskImageFile { path: image.to_path_buf(), source })?;
    eprintln!("booting {} ({}) under UEFI", image.display(), format.name());
    let mut config = QemuConfig::uefi(uefi);
    config.memory_mb = args.memory;
    config.control_socket = args.control_socket.clone();
    config.qmp_socket = Some(out.join("qmp.sock"));
    config.hostfwd = args.hostfwd.clone();
    config.no_reboot = args.no_reboot;
    config.fw_cfg_config = args.config.clone();
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
        let Command::Run(args) = cli.command else { panic!("not run") };
        assert_eq!(args.hostfwd.len(), 2);
        assert_eq!(args.memory, 1024);
        assert_eq!(args.control_socket.as_deref(), Some(Path::new("/tmp/c.sock")));
        let err = Cli::try_parse_from(["keel-build", "run", "h.toml", "--hostfwd", "8080:80"]).unwrap_err();
        assert!(err.to_string().contains("tcp:HOSTPORT-:GUESTPORT"), "{err}");
        assert!(args.disk.is_none() && args.config.is_none());
    }

    #[test]
    fn disk_and_config_arguments_parse() {
        let cli = Cli::try_parse_from(["keel-build", "run", "h.toml", "--disk", "var.img", "--config", "c.ign"]).unwrap();
        let Command::Run(args) = cli.command else { panic!("not run") };
        assert_eq!(args.disk.as_deref(), Some(Path::new("var.img")));
        assert_eq!(args.config.as_deref(), Some(Path::new("c.ign")));
    }

    #[test]
    fn disk_image_arguments_parse() {
        let cli = Cli::try_parse_from(["keel-build", "disk", "h.toml", "--out", "o", "--format", "qcow2", "--size", "8G"]).unwrap();
        let Command::Disk { format, size, .. } = cli.command else { panic!("not disk") };
        assert_eq!((format, size), (DiskFormat::Qcow2, 8 << 30));
        let cli = Cli::try_parse_from(["keel-build", "disk", "h.toml", "--out", "o"]).unwrap();
        assert!(matches!(cli.command, Command::Disk { format: DiskFormat::Raw, size, .. } if size == 4 << 30));
        let err = Cli::try_parse_from(["keel-build", "disk", "h.toml", "--out", "o", "--format", "vmdk"]).unwrap_err();
        assert!(err.to_string().contains("expected raw, qcow2 or vhd"), "{err}");
        let cli = Cli::try_parse_from(["keel-build", "run", "h.toml", "--disk-image", "d.qcow2", "--config", "c.ign"]).unwrap();
        let Command::Run(args) = cli.command else { panic!("not run") };
        assert_eq!(args.disk_image.as_deref(), Some(Path::new("d.qcow2")));
        assert!(Cli::try_parse_from(["keel-build", "run", "h.toml", "--disk-image", "d", "--disk", "v"]).is_err());
    }

    #[test]
    fn disk_var_arguments_parse() {
        let cli = Cli::try_parse_from(["keel-build", "disk-var", "--out", "v.img"]).unwrap();
        let Command::DiskVar { out, size } = cli.command else { panic!("not disk-var") };
        assert_eq!((out.as_path(), size), (Path::new("v.img"), 512 << 20));
        let cli = Cli::try_parse_from(["keel-build", "disk-var", "--out", "v.img", "--size", "1G"]).unwrap();
        assert!(matches!(cli.command, Command::DiskVar { size, .. } if size == 1 << 30));
        let err = Cli::try_parse_from(["keel-build", "disk-var", "--out", "v.img", "--size", "1X"]).unwrap_err();
        assert!(err.to_string().contains("unknown suffix"), "{err}");
        assert!(Cli::try_parse_from(["keel-build", "disk-var"]).is_err(), "--out is required");
    }
}
