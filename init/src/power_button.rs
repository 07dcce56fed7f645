//! The ACPI power button: what a cloud VM gets when its owner presses "stop".
//!
//! The kernel's `button` driver reports the press as KEY_POWER on an input device
//! (read through `evdev`). keel finds the devices whose name says "Power Button" and
//! watches them in its event loop.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

/// `struct input_event` on 64-bit Linux: timeval (16 bytes), type u16, code u16, value i32.
pub const INPUT_EVENT_SIZE: usize = 24;
const EV_KEY: u16 = 1;
const KEY_POWER: u16 = 116;

/// Whether a buffer of input events contains a KEY_POWER press (value 1).
pub fn contains_power_press(events: &[u8]) -> bool {
    events.chunks_exact(INPUT_EVENT_SIZE).any(|event| {
        let kind = u16::from_ne_bytes([event[16], event[17]]);
        let code = u16::from_ne_bytes([event[18], event[19]]);
        let value = i32::from_ne_bytes([event[20], event[21], event[22], event[23]]);
        kind == EV_KEY && code == KEY_POWER && value == 1
    })
}

/// The /dev/input/event* nodes of power buttons, found through sysfs names.
pub fn find_devices() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/class/input") else { return Vec::new() };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("event"))
        .filter(|e| {
            std::fs::read_to_string(e.path().join("device/name")).map(|n| n.trim().eq_ignore_ascii_case("power button")).unwrap_or(false)
        })
        .map(|e| PathBuf::from("/dev/input").join(e.file_name()))
        .collect();
    found.sort();
    found
}

/// Open every power button for non-blocking reads.
pub fn open_all() -> Vec<(PathBuf, File)> {
    find_devices()
        .into_iter()
        .filter_map(|path| match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC).open(&path) {
            Ok(file) => Some((path, file)),
            Err(e) => {
                log::warn!("power button {}: {e}", path.display());
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u16, code: u16, value: i32) -> Vec<u8> {
        let mut bytes = vec![0u8; 16];
        bytes.extend(kind.to_ne_bytes());
        bytes.extend(code.to_ne_bytes());
        bytes.extend(value.to_ne_bytes());
        bytes
    }

    #[test]
    fn press_is_seen_release_and_other_keys_are_not() {
        let press = [event(0, 0, 0), event(EV_KEY, KEY_POWER, 1)].concat();
        assert!(contains_power_press(&press));
        assert!(!contains_power_press(&event(EV_KEY, KEY_POWER, 0)));
        assert!(!contains_power_press(&event(EV_KEY, 30, 1)));
    }
}
