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
/// operating system had not put on disk. `tests/it/processor.rs` and `tests/it/delivery.rs` cut
/// the power this way; each store keeps a [`Ledger`] so that they can tell what a cut took.
pub fn simulate_power_cut(options: &mut rocksdb::Options) {
    if power_cut_simulated() {
        options.set_manual_wal_flush(true);
        options.set_writable_file_max_buffer_size(256 << 20);
    }
    let _ = options;
}

fn power_cut_simulated() -> bool {
    cfg!(feature = "fault-injection")
        && std::env::var_os("CARTSTREAM_FAULT_POWER_CUT").is_some_and(|value| value == "1")
}

/// The ledger's file, in the store's folder (RocksDB leaves files it does not name alone).
const LEDGER_FILE: &str = ".cartstream-power-cut";

/// Test builds only, under a simulated power cut (see [`simulate_power_cut`]): the last write a
/// store applied and the last it synced, as RocksDB sequence numbers, kept outside RocksDB in a
/// file the cut does not take (the kernel still holds it when the process is killed). A store
/// reopened after the cut compares it with what RocksDB recovered and logs what the cut took
/// (`store reopened after a simulated power cut`, with `applied`, `synced`, `recovered` and
/// `lost`): without it, a test could not tell a cut that lost writes from a plain kill. Does
/// nothing otherwise.
#[derive(Debug, Default)]
pub struct Ledger {
    file: Option<std::fs::File>,
}

impl Ledger {
    /// The ledger of the store at `path`, which RocksDB just opened with its writes up to
    /// `recovered`. Logs what a cut took since the last run, then starts over from `recovered`.
    pub fn open(path: &Path, recovered: u64) -> Ledger {
        if !power_cut_simulated() {
            return Ledger::default();
        }
        let file_path = path.join(LEDGER_FILE);
        if let Some((applied, synced)) = ledger(path) {
            tracing::warn!(
                store = %path.display(),
                applied,
                synced,
                recovered,
                lost = applied.saturating_sub(recovered),
                "store reopened after a simulated power cut"
            );
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&file_path);
        let ledger = Ledger { file: file.ok() };
        ledger.applied(recovered);
        ledger.synced(recovered);
        ledger
    }

    /// Notes that the store applied its writes up to `sequence`.
    pub fn applied(&self, sequence: u64) {
        self.note(0, sequence);
    }

    /// Notes that the store synced its writes up to `sequence` to disk.
    pub fn synced(&self, sequence: u64) {
        self.note(8, sequence);
    }

    fn note(&self, at: u64, sequence: u64) {
        use std::os::unix::fs::FileExt;
        if let Some(file) = &self.file {
            let _ = file.write_all_at(&sequence.to_le_bytes(), at);
        }
    }
}

/// The last write the store at `path` applied and the last it synced, from its [`Ledger`]:
/// `None` when it keeps none (no simulated power cut).
pub fn ledger(path: &Path) -> Option<(u64, u64)> {
    let bytes = std::fs::read(path.join(LEDGER_FILE)).ok()?;
    let number = |at: usize| Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
    Some((number(0)?, number(8)?))
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
    fn a_ledger_reads_back_the_last_write_applied_and_synced() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ledger(dir.path()), None);
        let file = std::fs::File::create(dir.path().join(LEDGER_FILE)).unwrap();
        let book = Ledger { file: Some(file) };
        book.applied(7);
        book.synced(5);
        book.applied(9);
        assert_eq!(ledger(dir.path()), Some((9, 5)));
    }

    #[test]
    fn without_a_simulated_power_cut_a_store_keeps_no_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let book = Ledger::open(dir.path(), 3);
        book.applied(4);
        assert_eq!(ledger(dir.path()), None);
    }

    #[test]
    fn a_folder_that_does_not_exist_fails_the_probe() {
        let dir = tempfile::tempdir().unwrap();
        assert!(probe(&dir.path().join("gone")).is_err());
    }
}
