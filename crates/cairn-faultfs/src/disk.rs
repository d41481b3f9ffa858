//! The model of a disk behind a page cache: a backing directory holds what a power cut
//! keeps, and each file's `Overlay` holds what it would lose.
//!
//! Which operations reach the "disk" (the backing directory) when:
//! - **Data** (`write`, `ftruncate`, `fallocate` that grows a file) stays in the file's
//!   overlay until `fsync`/`fdatasync` of that file, which writes it to the backing file and
//!   syncs that. Both calls sync data and size alike: they differ only in timestamps, which
//!   this model does not keep.
//! - **Metadata** (`create`, `mkdir`, `rename`, `unlink`, `rmdir`, `chmod`) is applied to
//!   the backing directory at once, as a journaling file system that commits its metadata
//!   immediately would. So a created file survives a power cut, holding only the bytes that
//!   were synced (none if it never was), and a rename survives without a directory fsync.
//!   This is kinder than ext4, which may lose a rename or a creation that was not followed
//!   by an fsync of the directory: this model tests lost data, not lost names.
//! - **Write-back**: when the dirty bytes of all files exceed `dirty_bytes_max`, the
//!   largest overlays are written to their backing files (not synced), as the kernel
//!   writes dirty pages back under memory pressure. Written-back bytes survive a power cut
//!   early, which real disks allow too; `Stats::written_back_bytes` counts them, so a test
//!   can assert that none were.
//!
//! Inode numbers are this file system's own, one per path seen, never reused; a path
//! keeps its number until it is unlinked or renamed over. Hard links, symlinks and special
//! files are not supported (Cairn and RocksDB create none).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::overlay::Overlay;

/// The root directory's inode number (FUSE's).
pub(crate) const ROOT: u64 = 1;

/// Counters of what the file system did since it was mounted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// `fsync` calls on files.
    pub fsyncs: u64,
    /// `fdatasync` calls on files.
    pub fdatasyncs: u64,
    /// Bytes made durable by those calls.
    pub synced_bytes: u64,
    /// Bytes written and not yet synced, now.
    pub dirty_bytes: u64,
    /// Dirty bytes written back early because `dirty_bytes_max` was exceeded.
    pub written_back_bytes: u64,
    /// Bytes discarded by power cuts.
    pub dropped_bytes: u64,
    /// Power cuts (`Control::drop_unsynced`).
    pub power_cuts: u64,
}

/// What a power cut discarded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Files that had unsynced data or size changes.
    pub files: u64,
    /// Unsynced bytes written to them.
    pub bytes: u64,
}

/// One open file.
struct Handle {
    ino: u64,
    file: Arc<File>,
}

/// A file's unsynced state and the backing file it is synced to.
struct Dirty {
    overlay: Overlay,
    backing: Arc<File>,
}

#[derive(Default)]
struct State {
    paths: HashMap<u64, PathBuf>,
    inodes: HashMap<PathBuf, u64>,
    next_ino: u64,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
    dirty: HashMap<u64, Dirty>,
    stats: Stats,
}

pub(crate) struct Disk {
    state: Mutex<State>,
    dirty_bytes_max: u64,
}

/// An entry of a directory listing.
pub(crate) struct DirEntry {
    pub ino: u64,
    pub is_dir: bool,
    pub name: std::ffi::OsString,
}

fn not_found() -> io::Error {
    io::Error::from(io::ErrorKind::NotFound)
}

fn bad_handle() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}

impl State {
    fn path(&self, ino: u64) -> io::Result<&PathBuf> {
        self.paths.get(&ino).ok_or_else(not_found)
    }

    fn ino_for(&mut self, path: &Path) -> u64 {
        if let Some(ino) = self.inodes.get(path) {
            return *ino;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.paths.insert(ino, path.to_owned());
        self.inodes.insert(path.to_owned(), ino);
        ino
    }

    /// Forgets a path that no longer exists (and under it, for a directory), with the
    /// unsynced data of its files: what was never synced of a deleted file is gone.
    fn forget_path(&mut self, path: &Path) {
        let gone: Vec<PathBuf> = self.inodes.keys().filter(|p| p.starts_with(path)).cloned().collect();
        for gone in gone {
            if let Some(ino) = self.inodes.remove(&gone) {
                self.paths.remove(&ino);
                if let Some(dirty) = self.dirty.remove(&ino) {
                    self.stats.dirty_bytes -= dirty.overlay.dirty_bytes();
                }
            }
        }
    }

    /// The file's size as readers see it.
    fn size(&self, ino: u64, metadata: &Metadata) -> u64 {
        self.dirty.get(&ino).map_or(metadata.len(), |dirty| dirty.overlay.size())
    }

    fn dirty_entry(&mut self, ino: u64, backing: &Arc<File>) -> io::Result<&mut Dirty> {
        match self.dirty.entry(ino) {
            std::collections::hash_map::Entry::Occupied(entry) => Ok(entry.into_mut()),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let size = backing.metadata()?.len();
                Ok(entry.insert(Dirty { overlay: Overlay::new(size), backing: Arc::clone(backing) }))
            }
        }
    }

    /// Changes a file's overlay, keeping the dirty byte count.
    fn change(&mut self, ino: u64, backing: &Arc<File>, change: impl FnOnce(&mut Overlay)) -> io::Result<()> {
        let dirty = self.dirty_entry(ino, backing)?;
        let before = dirty.overlay.dirty_bytes();
        change(&mut dirty.overlay);
        let after = dirty.overlay.dirty_bytes();
        self.stats.dirty_bytes = self.stats.dirty_bytes - before + after;
        Ok(())
    }

    /// Writes a file's overlay to its backing file; returns the bytes written.
    fn write_back(&mut self, ino: u64) -> io::Result<u64> {
        let Some(dirty) = self.dirty.remove(&ino) else { return Ok(0) };
        let bytes = dirty.overlay.dirty_bytes();
        self.stats.dirty_bytes -= bytes;
        if let Err(err) = dirty.overlay.write_to(&dirty.backing) {
            // Keep it dirty: the caller reports the error, a later sync retries.
            self.stats.dirty_bytes += bytes;
            self.dirty.insert(ino, dirty);
            return Err(err);
        }
        Ok(bytes)
    }
}

impl Disk {
    pub(crate) fn new(backing_root: &Path, dirty_bytes_max: u64) -> io::Result<Disk> {
        let root = backing_root.canonicalize()?;
        if !root.is_dir() {
            return Err(io::Error::new(io::ErrorKind::NotADirectory, format!("{} is not a directory", root.display())));
        }
        let mut state = State { next_ino: ROOT + 1, next_fh: 1, ..State::default() };
        state.paths.insert(ROOT, root.clone());
        state.inodes.insert(root, ROOT);
        Ok(Disk { state: Mutex::new(state), dirty_bytes_max })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent maps behind (every change is
        // made after the IO it describes succeeded): keep serving.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The metadata of `ino`, with the size readers see.
    pub(crate) fn attr(&self, ino: u64, fh: Option<u64>) -> io::Result<(Metadata, u64)> {
        let state = self.lock();
        let metadata = match fh.and_then(|fh| state.handles.get(&fh)) {
            Some(handle) => handle.file.metadata()?,
            None => std::fs::symlink_metadata(state.path(ino)?)?,
        };
        let size = state.size(ino, &metadata);
        Ok((metadata, size))
    }

    pub(crate) fn lookup(&self, parent: u64, name: &OsStr) -> io::Result<(u64, Metadata, u64)> {
        let mut state = self.lock();
        let path = state.path(parent)?.join(name);
        let metadata = std::fs::symlink_metadata(&path)?;
        let ino = state.ino_for(&path);
        let size = state.size(ino, &metadata);
        Ok((ino, metadata, size))
    }

    pub(crate) fn set_mode(&self, ino: u64, mode: u32) -> io::Result<()> {
        let state = self.lock();
        std::fs::set_permissions(state.path(ino)?, std::fs::Permissions::from_mode(mode & 0o7777))
    }

    /// `ftruncate` / `truncate`: an unsynced size change.
    pub(crate) fn set_size(&self, ino: u64, fh: Option<u64>, size: u64) -> io::Result<()> {
        let mut state = self.lock();
        let backing = match fh.and_then(|fh| state.handles.get(&fh)) {
            Some(handle) => Arc::clone(&handle.file),
            None => Arc::new(OpenOptions::new().read(true).write(true).open(state.path(ino)?)?),
        };
        state.change(ino, &backing, |overlay| overlay.set_size(size))
    }

    pub(crate) fn mkdir(&self, parent: u64, name: &OsStr, mode: u32) -> io::Result<(u64, Metadata)> {
        let mut state = self.lock();
        let path = state.path(parent)?.join(name);
        std::fs::create_dir(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))?;
        let metadata = std::fs::symlink_metadata(&path)?;
        Ok((state.ino_for(&path), metadata))
    }

    /// Creates (or with `exclusive` false, opens) a regular file and opens it.
    pub(crate) fn create(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        exclusive: bool,
    ) -> io::Result<(u64, u64, Metadata, u64)> {
        let mut state = self.lock();
        let path = state.path(parent)?.join(name);
        let mut options = OpenOptions::new();
        options.read(true).write(true).mode(mode & 0o7777);
        if exclusive {
            options.create_new(true);
        } else {
            options.create(true);
        }
        let file = options.open(&path)?;
        let metadata = file.metadata()?;
        let ino = state.ino_for(&path);
        let size = state.size(ino, &metadata);
        let fh = state.next_fh;
        state.next_fh += 1;
        state.handles.insert(fh, Handle { ino, file: Arc::new(file) });
        Ok((ino, fh, metadata, size))
    }

    pub(crate) fn open(&self, ino: u64, write: bool) -> io::Result<u64> {
        let mut state = self.lock();
        // Never O_APPEND nor O_TRUNC on the backing file: the kernel sends offsets and
        // size changes itself.
        let file = OpenOptions::new().read(true).write(write).open(state.path(ino)?)?;
        let fh = state.next_fh;
        state.next_fh += 1;
        state.handles.insert(fh, Handle { ino, file: Arc::new(file) });
        Ok(fh)
    }

    pub(crate) fn release(&self, fh: u64) {
        self.lock().handles.remove(&fh);
    }

    pub(crate) fn read(&self, fh: u64, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let state = self.lock();
        let handle = state.handles.get(&fh).ok_or_else(bad_handle)?;
        match state.dirty.get(&handle.ino) {
            Some(dirty) => dirty.overlay.read(&handle.file, offset, len),
            None => Overlay::new(handle.file.metadata()?.len()).read(&handle.file, offset, len),
        }
    }

    pub(crate) fn write(&self, fh: u64, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut state = self.lock();
        let handle = state.handles.get(&fh).ok_or_else(bad_handle)?;
        let (ino, backing) = (handle.ino, Arc::clone(&handle.file));
        state.change(ino, &backing, |overlay| overlay.write(offset, data))?;
        // Over the limit: write the largest overlays back, as the kernel's write-back would.
        while state.stats.dirty_bytes > self.dirty_bytes_max {
            let largest = state.dirty.iter().max_by_key(|(_, dirty)| dirty.overlay.dirty_bytes()).map(|(ino, _)| *ino);
            let Some(largest) = largest else { break };
            let bytes = state.write_back(largest)?;
            state.stats.written_back_bytes += bytes;
        }
        Ok(())
    }

    /// `fallocate`: mode 0 grows the file (an unsynced size change); `FALLOC_FL_KEEP_SIZE`
    /// only reserves blocks, which this model has none of.
    pub(crate) fn fallocate(&self, fh: u64, offset: u64, length: u64, mode: i32) -> io::Result<()> {
        let mut state = self.lock();
        let handle = state.handles.get(&fh).ok_or_else(bad_handle)?;
        let (ino, backing) = (handle.ino, Arc::clone(&handle.file));
        match mode {
            0 => {
                let end = offset.saturating_add(length);
                let size = match state.dirty.get(&ino) {
                    Some(dirty) => dirty.overlay.size(),
                    None => backing.metadata()?.len(),
                };
                if end > size {
                    state.change(ino, &backing, |overlay| overlay.set_size(end))?;
                }
                Ok(())
            }
            libc::FALLOC_FL_KEEP_SIZE => Ok(()),
            _ => Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP)),
        }
    }

    /// `fsync` (`datasync` false) or `fdatasync` of an open file: its overlay is written
    /// to the backing file, which is synced.
    pub(crate) fn fsync(&self, fh: u64, datasync: bool) -> io::Result<()> {
        let mut state = self.lock();
        let handle = state.handles.get(&fh).ok_or_else(bad_handle)?;
        let (ino, backing) = (handle.ino, Arc::clone(&handle.file));
        let bytes = state.write_back(ino)?;
        backing.sync_data()?;
        if datasync {
            state.stats.fdatasyncs += 1;
        } else {
            state.stats.fsyncs += 1;
        }
        state.stats.synced_bytes += bytes;
        Ok(())
    }

    pub(crate) fn unlink(&self, parent: u64, name: &OsStr) -> io::Result<()> {
        let mut state = self.lock();
        let path = state.path(parent)?.join(name);
        std::fs::remove_file(&path)?;
        state.forget_path(&path);
        Ok(())
    }

    pub(crate) fn rmdir(&self, parent: u64, name: &OsStr) -> io::Result<()> {
        let mut state = self.lock();
        let path = state.path(parent)?.join(name);
        std::fs::remove_dir(&path)?;
        state.forget_path(&path);
        Ok(())
    }

    pub(crate) fn rename(&self, parent: u64, name: &OsStr, new_parent: u64, new_name: &OsStr) -> io::Result<()> {
        let mut state = self.lock();
        let from = state.path(parent)?.join(name);
        let to = state.path(new_parent)?.join(new_name);
        std::fs::rename(&from, &to)?;
        if from == to {
            return Ok(());
        }
        // What `to` named is replaced; everything under `from` moves, keeping its inode.
        state.forget_path(&to);
        let moved: Vec<(PathBuf, u64)> =
            state.inodes.iter().filter(|(p, _)| p.starts_with(&from)).map(|(p, ino)| (p.clone(), *ino)).collect();
        for (old, ino) in moved {
            state.inodes.remove(&old);
            let new = match old.strip_prefix(&from) {
                Ok(rest) if rest.as_os_str().is_empty() => to.clone(),
                Ok(rest) => to.join(rest),
                Err(_) => continue,
            };
            state.inodes.insert(new.clone(), ino);
            state.paths.insert(ino, new);
        }
        Ok(())
    }

    /// The entries of a directory, `.` and `..` first.
    pub(crate) fn list(&self, ino: u64) -> io::Result<Vec<DirEntry>> {
        let mut state = self.lock();
        let path = state.path(ino)?.clone();
        let mut entries = vec![
            DirEntry { ino, is_dir: true, name: ".".into() },
            DirEntry { ino: ROOT, is_dir: true, name: "..".into() },
        ];
        for entry in std::fs::read_dir(&path)? {
            let entry = entry?;
            let child = state.ino_for(&entry.path());
            entries.push(DirEntry { ino: child, is_dir: entry.file_type()?.is_dir(), name: entry.file_name() });
        }
        Ok(entries)
    }

    /// A power cut: every file returns to what was last synced of it.
    pub(crate) fn drop_unsynced(&self) -> Dropped {
        let mut state = self.lock();
        let dropped = Dropped {
            files: state.dirty.len() as u64,
            bytes: state.dirty.values().map(|dirty| dirty.overlay.dirty_bytes()).sum(),
        };
        state.dirty.clear();
        state.stats.dirty_bytes = 0;
        state.stats.dropped_bytes += dropped.bytes;
        state.stats.power_cuts += 1;
        dropped
    }

    pub(crate) fn stats(&self) -> Stats {
        self.lock().stats
    }
}
