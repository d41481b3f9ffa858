//! The FUSE side: turns kernel requests into calls on the `Disk` model.
//!
//! Files are opened with `FOPEN_DIRECT_IO` and attributes and entries are never cached
//! (time to live 0), so the kernel's page cache never holds a file's data: every read comes
//! here and sees what the model holds, before and after a power cut. A delayed fsync waits
//! on its own thread, so other requests keep being served meanwhile (the kernel still
//! holds the file's inode lock during an fsync, so writes to that one file wait for it, as
//! on a disk that stalls).

use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, OpenAccMode,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::disk::Disk;
use crate::faults::Faults;

/// Nothing is cached in the kernel: see the module comment.
const TTL: Duration = Duration::ZERO;

pub(crate) struct FaultFs {
    pub(crate) disk: Arc<Disk>,
    pub(crate) faults: Arc<Faults>,
}

fn errno(err: std::io::Error) -> Errno {
    Errno::from(err)
}

fn time(seconds: i64, nanoseconds: i64) -> SystemTime {
    let since = Duration::new(seconds.unsigned_abs(), nanoseconds.clamp(0, 999_999_999) as u32);
    if seconds >= 0 { UNIX_EPOCH + since } else { UNIX_EPOCH - since }
}

fn attr(ino: u64, metadata: &Metadata, size: u64) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: time(metadata.atime(), metadata.atime_nsec()),
        mtime: time(metadata.mtime(), metadata.mtime_nsec()),
        ctime: time(metadata.ctime(), metadata.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind: FileType::from_std(metadata.file_type()).unwrap_or(FileType::RegularFile),
        perm: (metadata.mode() & 0o7777) as u16,
        nlink: metadata.nlink() as u32,
        uid: metadata.uid(),
        gid: metadata.gid(),
        rdev: metadata.rdev() as u32,
        blksize: 4096,
        flags: 0,
    }
}

impl Filesystem for FaultFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.disk.lookup(parent.0, name) {
            Ok((ino, metadata, size)) => reply.entry(&TTL, &attr(ino, &metadata, size), Generation(0)),
            Err(err) => reply.error(errno(err)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.disk.attr(ino.0, fh.map(|fh| fh.0)) {
            Ok((metadata, size)) => reply.attr(&TTL, &attr(ino.0, &metadata, size)),
            Err(err) => reply.error(errno(err)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // Owners and times are not modelled: they are accepted and left as they are.
        let result = mode
            .map_or(Ok(()), |mode| self.disk.set_mode(ino.0, mode))
            .and_then(|()| size.map_or(Ok(()), |size| self.disk.set_size(ino.0, fh.map(|fh| fh.0), size)))
            .and_then(|()| self.disk.attr(ino.0, fh.map(|fh| fh.0)));
        match result {
            Ok((metadata, size)) => reply.attr(&TTL, &attr(ino.0, &metadata, size)),
            Err(err) => reply.error(errno(err)),
        }
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        match self.disk.mkdir(parent.0, name, mode & !umask) {
            Ok((ino, metadata)) => reply.entry(&TTL, &attr(ino, &metadata, metadata.len()), Generation(0)),
            Err(err) => reply.error(errno(err)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.disk.unlink(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(errno(err)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.disk.rmdir(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(errno(err)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if !flags.is_empty() {
            reply.error(Errno::EINVAL);
            return;
        }
        match self.disk.rename(parent.0, name, newparent.0, newname) {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(errno(err)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write = flags.acc_mode() != OpenAccMode::O_RDONLY;
        match self.disk.open(ino.0, write) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
            Err(err) => reply.error(errno(err)),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self.disk.create(parent.0, name, mode & !umask, flags & libc::O_EXCL != 0) {
            Ok((ino, fh, metadata, size)) => reply.created(
                &TTL,
                &attr(ino, &metadata, size),
                Generation(0),
                FileHandle(fh),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(err) => reply.error(errno(err)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.disk.read(fh.0, offset, u64::from(size)) {
            Ok(data) => reply.data(&data),
            Err(err) => reply.error(errno(err)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.disk.write(fh.0, offset, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(err) => reply.error(errno(err)),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // `close` syncs nothing.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.disk.release(fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        let started = Instant::now();
        let sync = {
            let (disk, faults) = (Arc::clone(&self.disk), Arc::clone(&self.faults));
            move || {
                faults.wait_fsync(started);
                match disk.fsync(fh.0, datasync) {
                    Ok(()) => reply.ok(),
                    Err(err) => reply.error(errno(err)),
                }
            }
        };
        if self.faults.fsync_delay().is_zero() {
            sync();
        } else if let Err(err) = std::thread::Builder::new().name("faultfs-fsync".into()).spawn(sync) {
            // The reply went with the closure: the kernel sees the request fail when it is
            // dropped unanswered.
            tracing::error!(error = %err, "cannot start a delayed fsync");
        }
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::empty());
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        match self.disk.list(ino.0) {
            Ok(entries) => {
                for (index, entry) in entries.iter().enumerate().skip(offset as usize) {
                    let kind = if entry.is_dir { FileType::Directory } else { FileType::RegularFile };
                    if reply.add(INodeNo(entry.ino), index as u64 + 1, kind, &entry.name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(err) => reply.error(errno(err)),
        }
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        // Metadata reaches the backing directory at once (see `disk.rs`): nothing to sync.
        reply.ok();
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        match self.disk.fallocate(fh.0, offset, length, mode) {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(errno(err)),
        }
    }
}
