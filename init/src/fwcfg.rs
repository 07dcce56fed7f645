//! The first-boot config passed by QEMU's fw_cfg device under the key Fedora CoreOS
//! uses, `opt/com.coreos/config` (`-fw_cfg name=opt/com.coreos/config,file=CONFIG.ign`;
//! `keel-build run --config CONFIG.ign` passes it that way).
//!
//! The kernel's `qemu_fw_cfg` module shows each fw_cfg item as a sysfs directory with a
//! `raw` file. This module only transports the bytes: parsing is the firstboot step's.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The fw_cfg key (file name) of the config.
pub const CONFIG_KEY: &str = "opt/com.coreos/config";
/// Where the `qemu_fw_cfg` module shows the config's bytes.
pub const CONFIG_RAW_PATH: &str = "/sys/firmware/qemu_fw_cfg/by_name/opt/com.coreos/config/raw";
/// The largest config accepted (64 MiB).
pub const MAX_CONFIG_BYTES: usize = 64 << 20;
/// Bytes asked for per read(2): fw_cfg reads restart from the item's start, so small
/// reads make reading a big config quadratic.
pub const READ_CHUNK: usize = 1 << 20;

/// Why the fw_cfg config could not be read.
#[derive(Debug, thiserror::Error)]
#[error("fw_cfg {CONFIG_KEY}: {op} {}: {source}", path.display())]
pub struct FwCfgError {
    /// `open` or `read`.
    pub op: &'static str,
    /// The sysfs file.
    pub path: PathBuf,
    /// The OS error (or the size limit, as `InvalidData`).
    #[source]
    pub source: io::Error,
}

/// The config passed by fw_cfg: `Ok(None)` when QEMU passed none (or the `qemu_fw_cfg`
/// module is not loaded, which keel's images do when the host lists it); an error
/// when the file is there but cannot be read or exceeds [`MAX_CONFIG_BYTES`].
pub fn read_config() -> Result<Option<Vec<u8>>, FwCfgError> {
    read_config_from(Path::new(CONFIG_RAW_PATH), MAX_CONFIG_BYTES)
}

/// [`read_config`] from any path, with any size limit.
pub fn read_config_from(path: &Path, limit: usize) -> Result<Option<Vec<u8>>, FwCfgError> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(FwCfgError { op: "open", path: path.to_path_buf(), source }),
    };
    read_limited(&mut file, limit).map(Some).map_err(|source| FwCfgError { op: "read", path: path.to_path_buf(), source })
}

/// Everything `reader` yields, read [`READ_CHUNK`] bytes at a time; an error when it
/// yields more than `limit` bytes.
pub fn read_limited(reader: &mut impl Read, limit: usize) -> io::Result<Vec<u8>> {
    let mut data = Vec::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(data),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if data.len() + n > limit {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("the config is larger than {limit} bytes")));
        }
        data.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that records the size of every read it is asked for.
    struct Recording<'a> {
        data: &'a [u8],
        asks: Vec<usize>,
    }

    impl Read for Recording<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.asks.push(buf.len());
            let n = buf.len().min(self.data.len()).min(4096 * 3);
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn reads_in_large_chunks_until_the_end() {
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let mut reader = Recording { data: &data, asks: Vec::new() };
        assert_eq!(read_limited(&mut reader, MAX_CONFIG_BYTES).unwrap(), data);
        assert!(reader.asks.iter().all(|&ask| ask == READ_CHUNK), "{:?}", reader.asks);
    }

    #[test]
    fn a_config_over_the_limit_is_an_error() {
        let data = vec![b'x'; 5000];
        let err = read_limited(&mut &data[..], 4999).unwrap_err();
        assert!(err.to_string().contains("larger than 4999 bytes"), "{err}");
        assert_eq!(read_limited(&mut &data[..], 5000).unwrap().len(), 5000);
        assert!(read_limited(&mut &b""[..], 0).unwrap().is_empty());
    }

    #[test]
    fn a_missing_file_is_no_config() {
        let missing = std::env::temp_dir().join(format!("keel-fwcfg-missing-{}", std::process::id()));
        assert_eq!(read_config_from(&missing, 10).unwrap(), None);
        let path = std::env::temp_dir().join(format!("keel-fwcfg-{}", std::process::id()));
        std::fs::write(&path, b"{\"ignition\":{}}").unwrap();
        assert_eq!(read_config_from(&path, 100).unwrap(), Some(b"{\"ignition\":{}}".to_vec()));
        let err = read_config_from(&path, 3).unwrap_err().to_string();
        assert!(err.starts_with("fw_cfg opt/com.coreos/config: read "), "{err}");
        let _ = std::fs::remove_file(&path);
        let dir_err = read_config_from(&std::env::temp_dir(), 10).unwrap_err().to_string();
        assert!(dir_err.contains("fw_cfg"), "{dir_err}");
    }
}
