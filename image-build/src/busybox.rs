//! The applets of a busybox binary, from `busybox --list`, run at build time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Why the applet list could not be had.
#[derive(Debug, thiserror::Error)]
pub enum BusyboxError {
    /// The binary could not be run.
    #[error("busybox {}: cannot run `--list`: {source}", path.display())]
    Run {
        /// The busybox path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `busybox --list` exited with a failure status.
    #[error("busybox {}: `--list` failed ({status}): {stderr}", path.display())]
    Failed {
        /// The busybox path.
        path: PathBuf,
        /// How it exited.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// An applet name cannot be a file name in /bin.
    #[error("busybox {}: `--list` printed an unusable applet name {name:?}", path.display())]
    BadApplet {
        /// The busybox path.
        path: PathBuf,
        /// The applet name.
        name: String,
    },
}

/// Run `busybox --list` and return its applets, sorted and without duplicates.
pub fn list_applets(path: &Path) -> Result<Vec<String>, BusyboxError> {
    let output = Command::new(path)
        .arg("--list")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| BusyboxError::Run { path: path.to_path_buf(), source })?;
    if !output.status.success() {
        return Err(BusyboxError::Failed {
            path: path.to_path_buf(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    parse_applets(&String::from_utf8_lossy(&output.stdout)).map_err(|name| BusyboxError::BadApplet { path: path.to_path_buf(), name })
}

/// Parse the output of `busybox --list`: one applet per line, sorted and deduplicated.
/// An unusable name (with `/`, NUL, or `.`/`..`) is returned as the error.
pub fn parse_applets(text: &str) -> Result<Vec<String>, String> {
    let mut applets = Vec::new();
    for name in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if name.contains(['/', '\0']) || name == "." || name == ".." {
            return Err(name.to_string());
        }
        applets.push(name.to_string());
    }
    applets.sort();
    applets.dedup();
    Ok(applets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applets_are_sorted_and_unique() {
        assert_eq!(parse_applets("sh\n[\nls\n\nsh\n").unwrap(), ["[", "ls", "sh"]);
        assert_eq!(parse_applets("ok\n../x\n").unwrap_err(), "../x");
    }

    #[test]
    fn missing_binary_is_named() {
        let err = list_applets(Path::new("/nonexistent/busybox")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/busybox"), "{err}");
    }
}
