//! The file system through a real FUSE mount: what survives a power cut is exactly what
//! was fsynced. Needs `/dev/fuse` and `fusermount3` (root in CI): fails, never skips,
//! without them.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cairn_faultfs::{FaultFs, FaultFsOptions};

struct Mounted {
    fs: FaultFs,
    _dir: tempfile::TempDir,
    backing: PathBuf,
}

impl Mounted {
    fn path(&self, name: &str) -> PathBuf {
        self.fs.mountpoint().join(name)
    }
}

fn mount_with(options: FaultFsOptions) -> Mounted {
    if let Err(err) = cairn_faultfs::check_fuse_available() {
        panic!("these tests need FUSE (run as root with /dev/fuse and the fuse3 package): {err}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let backing = dir.path().join("backing");
    let mountpoint = dir.path().join("mnt");
    std::fs::create_dir(&backing).expect("backing dir");
    std::fs::create_dir(&mountpoint).expect("mountpoint");
    let fs = FaultFs::mount(&backing, &mountpoint, &options).expect("mount");
    Mounted { fs, _dir: dir, backing }
}

fn mount() -> Mounted {
    mount_with(FaultFsOptions::default())
}

fn read(path: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    File::open(path).expect("open").read_to_end(&mut bytes).expect("read");
    bytes
}

#[test]
fn unsynced_writes_are_read_back_and_lost_in_a_power_cut() {
    let m = mount();
    let path = m.path("f");
    let mut file = File::create(&path).expect("create");
    file.write_all(b"synced").expect("write");
    file.sync_all().expect("fsync");
    file.write_all(b" and not").expect("write");
    drop(file);
    assert_eq!(read(&path), b"synced and not");
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), 14);
    assert_eq!(std::fs::read(m.backing.join("f")).expect("backing"), b"synced", "only synced bytes on disk");

    let dropped = m.fs.control().drop_unsynced();
    assert_eq!((dropped.files, dropped.bytes), (1, 8));
    assert_eq!(read(&path), b"synced");
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), 6);
    let stats = m.fs.control().stats();
    assert_eq!((stats.fsyncs, stats.synced_bytes, stats.dropped_bytes, stats.dirty_bytes), (1, 6, 8, 0));
}

#[test]
fn fdatasync_syncs_data_and_size() {
    let m = mount();
    let path = m.path("wal");
    let file = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path).expect("create");
    file.write_all_at(b"record-1", 0).expect("write");
    file.sync_data().expect("fdatasync");
    file.write_all_at(b"record-2", 8).expect("write");
    assert_eq!(read(&path), b"record-1record-2");
    drop(file);
    m.fs.control().drop_unsynced();
    assert_eq!(read(&path), b"record-1");
    assert_eq!(m.fs.control().stats().fdatasyncs, 1);
}

#[test]
fn a_created_file_keeps_only_synced_bytes_and_truncation_is_data() {
    let m = mount();
    std::fs::write(m.path("never-synced"), b"lost").expect("write");
    let mut kept = File::create(m.path("kept")).expect("create");
    kept.write_all(b"0123456789").expect("write");
    kept.sync_all().expect("fsync");
    kept.set_len(3).expect("truncate");
    assert_eq!(read(&m.path("kept")), b"012");
    drop(kept);
    m.fs.control().drop_unsynced();
    assert_eq!(read(&m.path("never-synced")), b"", "the name survives, the bytes do not");
    assert_eq!(read(&m.path("kept")), b"0123456789", "the unsynced truncation is undone");
}

#[test]
fn rename_and_unlink_apply_at_once_and_data_follows_the_file() {
    let m = mount();
    std::fs::create_dir(m.path("dir")).expect("mkdir");
    let mut file = File::create(m.path("dir/tmp")).expect("create");
    file.write_all(b"current").expect("write");
    file.sync_all().expect("fsync");
    file.write_all(b"+unsynced").expect("write");
    drop(file);
    std::fs::rename(m.path("dir/tmp"), m.path("dir/CURRENT")).expect("rename");
    assert!(!m.path("dir/tmp").exists());
    assert_eq!(read(&m.path("dir/CURRENT")), b"current+unsynced");
    std::fs::write(m.path("gone"), b"x").expect("write");
    std::fs::remove_file(m.path("gone")).expect("unlink");
    assert_eq!(m.fs.control().stats().dirty_bytes, 9, "an unlinked file's unsynced bytes are gone");
    m.fs.control().drop_unsynced();
    assert_eq!(read(&m.path("dir/CURRENT")), b"current");
    let names: Vec<_> =
        std::fs::read_dir(m.path("dir")).expect("readdir").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(names, ["CURRENT"]);
    assert!(!m.path("gone").exists());
}

#[test]
fn past_the_dirty_limit_the_largest_file_is_written_back() {
    let m = mount_with(FaultFsOptions { dirty_bytes_max: 1024 });
    let mut big = File::create(m.path("big")).expect("create");
    big.write_all(&[7u8; 1000]).expect("write");
    let mut small = File::create(m.path("small")).expect("create");
    small.write_all(&[1u8; 100]).expect("write");
    let stats = m.fs.control().stats();
    assert_eq!((stats.written_back_bytes, stats.dirty_bytes), (1000, 100));
    drop((big, small));
    m.fs.control().drop_unsynced();
    assert_eq!(read(&m.path("big")).len(), 1000, "written back: survives");
    assert_eq!(read(&m.path("small")).len(), 0);
}

#[test]
fn a_delayed_fsync_waits_while_other_files_are_served_and_resume_releases_it() {
    let m = mount();
    std::fs::write(m.path("other"), b"readable").expect("write");
    let control = m.fs.control();
    control.delay_fsync(Duration::from_secs(30));
    let path = m.path("slow");
    let syncer = std::thread::spawn(move || {
        let mut file = File::create(&path).expect("create");
        file.write_all(b"data").expect("write");
        let started = Instant::now();
        file.sync_all().expect("fsync");
        started.elapsed()
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !syncer.is_finished() && Instant::now() < deadline && control.stats().dirty_bytes < 12 {
        std::thread::sleep(Duration::from_millis(10));
    }
    // The fsync is pending (its 4 bytes still dirty), other files still read.
    let started = Instant::now();
    assert_eq!(read(&m.path("other")), b"readable");
    assert!(started.elapsed() < Duration::from_secs(2), "reads of other files are not held by the fsync");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!syncer.is_finished(), "the fsync waits out its delay");
    control.resume();
    let waited = syncer.join().expect("syncer");
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(20), "fsync took {waited:?}");
    control.drop_unsynced();
    assert_eq!(read(&m.path("slow")), b"data", "synced once resumed");
}
