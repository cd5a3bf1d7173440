//! The state volumes of the processor and delivery roles: telling a volume that cannot be
//! written (full, read-only, failing) from other storage errors, and finding out when it can be
//! written again. Both roles then stop consuming, keep running, and resume by themselves.

use std::io::Write;
use std::path::Path;

/// How often a stalled role probes its state volume.
pub const PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// The bytes a probe writes and syncs: room for the stores to reopen and flush, not one block.
const PROBE_BYTES: usize = 4 << 20;
const PROBE_FILE: &str = ".cartstream-volume-probe";

/// Whether a RocksDB error is the volume's (an I/O error: no space left, read-only, failing
/// device), after which the role waits for the volume, rather than a fault of the data.
pub fn is_volume_error(error: &rocksdb::Error) -> bool {
    error.kind() == rocksdb::ErrorKind::IOError
}

/// Test builds only (feature `fault-injection`): with `CARTSTREAM_FAULT_POWER_CUT=1` in the
/// environment, a store keeps its log writes in its own memory until it is synced, so killing
/// the process loses every write not synced yet — what a power cut does to the writes the
/// operating system had not put on disk. `tests/it/delivery.rs` cuts the power this way.
pub fn simulate_power_cut(options: &mut rocksdb::Options) {
    #[cfg(feature = "fault-injection")]
    if std::env::var_os("CARTSTREAM_FAULT_POWER_CUT").is_some_and(|value| value == "1") {
        options.set_manual_wal_flush(true);
        options.set_writable_file_max_buffer_size(256 << 20);
    }
    let _ = options;
}

/// Writes, syncs and removes a probe file in `dir`: `Ok` when the volume takes writes again.
pub fn probe(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(PROBE_FILE);
    let written = std::fs::File::create(&path).and_then(|mut file| {
        file.write_all(&vec![0u8; PROBE_BYTES])?;
        file.sync_all()
    });
    let removed = std::fs::remove_file(&path);
    written?;
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writable_folder_passes_the_probe_and_keeps_no_file() {
        let dir = tempfile::tempdir().unwrap();
        probe(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_folder_that_does_not_exist_fails_the_probe() {
        let dir = tempfile::tempdir().unwrap();
        assert!(probe(&dir.path().join("gone")).is_err());
    }
}
