//! A FUSE file system that loses what was not fsynced, as a power cut does.
//!
//! `FaultFs::mount` mounts a pass-through of a backing directory. Written data and size
//! changes stay in memory (per file) until that file is `fsync`ed or `fdatasync`ed; reads
//! see them. `Control::drop_unsynced` discards everything not yet synced: with the process
//! using the mount killed first (SIGKILL), that is a power cut. `Control::delay_fsync`
//! makes every fsync take longer (a fail-slow disk) until `Control::resume`. What reaches
//! the backing directory when, metadata included, is described in `disk.rs`.
//!
//! Tests mount it in-process and call the control methods directly; the `cairn-faultfs`
//! binary mounts it for other processes (the `jepsen/` suite) and takes the same commands
//! on a Unix socket.

mod disk;
mod faults;
mod fs;
mod overlay;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use disk::{Dropped, Stats};

use crate::disk::Disk;
use crate::faults::Faults;
use crate::fs::FaultFs as Adapter;

/// Unsynced bytes kept in memory by default before the largest files are written back.
pub const DIRTY_BYTES_MAX_DEFAULT: u64 = 256 * 1024 * 1024;
/// Threads serving kernel requests.
const FUSE_THREADS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum FaultFsError {
    /// The machine cannot mount FUSE file systems.
    #[error("FUSE is not available: {0}")]
    Unavailable(String),
    #[error("cannot use backing directory {path}: {source}")]
    Backing { path: PathBuf, source: std::io::Error },
    #[error("cannot mount at {path}: {source}")]
    Mount { path: PathBuf, source: std::io::Error },
    #[error("cannot unmount {path}: {source}")]
    Unmount { path: PathBuf, source: std::io::Error },
}

#[derive(Debug, Clone)]
pub struct FaultFsOptions {
    /// Unsynced bytes (all files together) kept in memory; past it the largest files'
    /// unsynced data is written back to the backing directory, where it survives a power
    /// cut (counted in `Stats::written_back_bytes`).
    pub dirty_bytes_max: u64,
}

impl Default for FaultFsOptions {
    fn default() -> Self {
        FaultFsOptions { dirty_bytes_max: DIRTY_BYTES_MAX_DEFAULT }
    }
}

/// Checks that this machine can mount FUSE file systems (`/dev/fuse` and `fusermount3`),
/// with a message that says what to install when it cannot.
pub fn check_fuse_available() -> Result<(), FaultFsError> {
    if !Path::new("/dev/fuse").exists() {
        return Err(FaultFsError::Unavailable(
            "/dev/fuse does not exist (load the fuse module, or run the container with --device /dev/fuse)".into(),
        ));
    }
    if let Err(err) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        return Err(FaultFsError::Unavailable(format!("/dev/fuse cannot be opened: {err}")));
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join("fusermount3").is_file()))
        .unwrap_or(false);
    if !on_path {
        return Err(FaultFsError::Unavailable("fusermount3 is not on PATH (install the fuse3 package)".into()));
    }
    Ok(())
}

/// Injects faults into a mounted `FaultFs`. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    disk: Arc<Disk>,
    faults: Arc<Faults>,
}

impl Control {
    /// A power cut: every file returns to what was last synced of it. Kill the processes
    /// that use the mount first: what they write afterwards is kept.
    pub fn drop_unsynced(&self) -> Dropped {
        self.disk.drop_unsynced()
    }

    /// Every fsync from now on (and those waiting) takes at least `delay`.
    pub fn delay_fsync(&self, delay: Duration) {
        self.faults.set_fsync_delay(delay);
    }

    /// Ends the fsync delay, releasing the fsyncs that wait.
    pub fn resume(&self) {
        self.faults.set_fsync_delay(Duration::ZERO);
    }

    pub fn stats(&self) -> Stats {
        self.disk.stats()
    }
}

/// A mounted `FaultFs`; dropping it unmounts.
pub struct FaultFs {
    session: Option<fuser::BackgroundSession>,
    control: Control,
    mountpoint: PathBuf,
}

impl FaultFs {
    /// Mounts a pass-through of `backing` at `mountpoint` (an existing, empty directory).
    pub fn mount(backing: &Path, mountpoint: &Path, options: &FaultFsOptions) -> Result<FaultFs, FaultFsError> {
        check_fuse_available()?;
        let disk = Disk::new(backing, options.dirty_bytes_max)
            .map_err(|source| FaultFsError::Backing { path: backing.to_owned(), source })?;
        let control = Control { disk: Arc::new(disk), faults: Arc::new(Faults::default()) };
        let adapter = Adapter { disk: Arc::clone(&control.disk), faults: Arc::clone(&control.faults) };
        let mut config = fuser::Config::default();
        config.mount_options = vec![fuser::MountOption::FSName("cairn-faultfs".into()), fuser::MountOption::RW];
        config.n_threads = Some(FUSE_THREADS);
        let session = fuser::spawn_mount(adapter, mountpoint, &config)
            .map_err(|source| FaultFsError::Mount { path: mountpoint.to_owned(), source })?;
        Ok(FaultFs { session: Some(session), control, mountpoint: mountpoint.to_owned() })
    }

    pub fn control(&self) -> Control {
        self.control.clone()
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Unmounts (fails while files in it are open) and waits for the serving threads.
    pub fn unmount(mut self) -> Result<(), FaultFsError> {
        match self.session.take() {
            Some(session) => session
                .umount_and_join()
                .map_err(|source| FaultFsError::Unmount { path: self.mountpoint.clone(), source }),
            None => Ok(()),
        }
    }
}

impl Drop for FaultFs {
    fn drop(&mut self) {
        if let Some(session) = self.session.take()
            && let Err(err) = session.umount_and_join()
        {
            // Busy (a test that panicked with files still open): detach it lazily rather
            // than leave a mount behind.
            tracing::warn!(mountpoint = %self.mountpoint.display(), error = %err, "cannot unmount; detaching it");
            let _ = std::process::Command::new("fusermount3").arg("-u").arg("-z").arg(&self.mountpoint).status();
        }
    }
}
