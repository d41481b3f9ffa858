//! A node's disk: its data directory, optionally on a size-limited tmpfs (so the disk
//! nemesis can fill it) and optionally behind a `cairn-faultfs` mount (so the power
//! nemesis can drop what the node wrote but never synced).
//!
//! Layout in the run directory, for node `i`:
//! - `node{i}.disk/`: the tmpfs, when limited; holds `data/` (or `backing/`) and `filler`.
//! - `node{i}.data/`: the data directory, or the faultfs mount point over `backing/`
//!   (`node{i}.backing/` when the disk is not limited).
//! - `node{i}.faultfs.sock` and `node{i}.faultfs.log`: the faultfs control socket and log.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::command::{run, run_ignoring_failure};

/// How long faultfs may take to mount, and to answer or unmount.
const FAULTFS_TIMEOUT: Duration = Duration::from_secs(30);
/// The filler is written in pieces of this size.
const FILL_CHUNK_BYTES: usize = 1 << 20;

pub struct Disk {
    data_dir: PathBuf,
    /// The tmpfs mount point, when the disk is size-limited.
    tmpfs: Option<PathBuf>,
    faultfs: Option<FaultFs>,
}

/// A running `cairn-faultfs` process and its mount.
struct FaultFs {
    process: Child,
    mountpoint: PathBuf,
    control: PathBuf,
}

impl Disk {
    /// Prepares node `node`'s data directory under `dir`: on a tmpfs of `bytes` when given,
    /// behind faultfs (this binary) when given.
    pub fn prepare(dir: &Path, node: u64, bytes: Option<u64>, faultfs_binary: Option<&Path>) -> anyhow::Result<Disk> {
        let mut disk = Disk { data_dir: dir.join(format!("node{node}.data")), tmpfs: None, faultfs: None };
        if let Some(bytes) = bytes {
            let tmpfs = dir.join(format!("node{node}.disk"));
            std::fs::create_dir_all(&tmpfs).with_context(|| format!("creating {}", tmpfs.display()))?;
            if is_mounted(&tmpfs) {
                run_ignoring_failure("umount", &["-l", &tmpfs.display().to_string()]);
            }
            let options = format!("size={bytes},mode=0755");
            run(
                "mount",
                &["-t", "tmpfs", "-o", &options, &format!("cairn-jepsen-n{node}"), &tmpfs.display().to_string()],
            )?;
            disk.tmpfs = Some(tmpfs);
        }
        match faultfs_binary {
            None => {
                if let Some(tmpfs) = &disk.tmpfs {
                    disk.data_dir = tmpfs.join("data");
                }
            }
            Some(binary) => {
                let backing = match &disk.tmpfs {
                    Some(tmpfs) => tmpfs.join("backing"),
                    None => dir.join(format!("node{node}.backing")),
                };
                std::fs::create_dir_all(&backing).with_context(|| format!("creating {}", backing.display()))?;
                std::fs::create_dir_all(&disk.data_dir)
                    .with_context(|| format!("creating {}", disk.data_dir.display()))?;
                let control = dir.join(format!("node{node}.faultfs.sock"));
                let log = dir.join(format!("node{node}.faultfs.log"));
                disk.faultfs = Some(FaultFs::mount(binary, &backing, &disk.data_dir, &control, &log)?);
            }
        }
        std::fs::create_dir_all(&disk.data_dir).with_context(|| format!("creating {}", disk.data_dir.display()))?;
        Ok(disk)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Whether the disk is a size-limited tmpfs (the disk nemesis needs one).
    pub fn is_limited(&self) -> bool {
        self.tmpfs.is_some()
    }

    /// Whether the data directory is behind faultfs (the power nemesis needs that).
    pub fn has_faultfs(&self) -> bool {
        self.faultfs.is_some()
    }

    /// The file that fills the tmpfs, when the disk is limited.
    pub fn filler(&self) -> Option<PathBuf> {
        self.tmpfs.as_ref().map(|tmpfs| tmpfs.join("filler"))
    }

    /// A power cut's disk half: what the node wrote but did not sync is lost. Kill the node
    /// first. Returns faultfs's answer ("dropped N bytes of M files").
    pub fn drop_unsynced(&self) -> anyhow::Result<String> {
        let faultfs = self.faultfs.as_ref().context("this node's disk has no faultfs (ClusterConfig::power)")?;
        let answer = faultfs.command("drop")?;
        anyhow::ensure!(!answer.starts_with("error"), "faultfs: {answer}");
        Ok(answer)
    }

    /// Unmounts faultfs and the tmpfs (the node must be stopped). Safe to call twice.
    pub fn unmount(&mut self) -> anyhow::Result<()> {
        let mut errors = Vec::new();
        if let Some(mut faultfs) = self.faultfs.take()
            && let Err(error) = faultfs.unmount()
        {
            errors.push(format!("{error:#}"));
        }
        if let Some(tmpfs) = self.tmpfs.take()
            && is_mounted(&tmpfs)
            && let Err(error) = run("umount", &[&tmpfs.display().to_string()])
        {
            // Busy (a process we could not stop): detach it, it goes once unused.
            run_ignoring_failure("umount", &["-l", &tmpfs.display().to_string()]);
            errors.push(format!("{error:#}"));
        }
        anyhow::ensure!(errors.is_empty(), "unmounting: {}", errors.join("; "));
        Ok(())
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        if let Err(error) = self.unmount() {
            tracing::warn!(error = %format!("{error:#}"), "disk not cleanly unmounted");
        }
    }
}

/// Writes `path` until the file system is full (ENOSPC); the bytes written. The file stays.
pub fn fill(path: &Path) -> anyhow::Result<u64> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    let chunk = vec![0x5a_u8; FILL_CHUNK_BYTES];
    let mut written = 0_u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => return Ok(written),
            Ok(bytes) => written += bytes as u64,
            Err(error) if error.raw_os_error() == Some(libc::ENOSPC) => return Ok(written),
            Err(error) => return Err(error).with_context(|| format!("filling {}", path.display())),
        }
    }
}

impl FaultFs {
    fn mount(binary: &Path, backing: &Path, mountpoint: &Path, control: &Path, log: &Path) -> anyhow::Result<FaultFs> {
        // Unix socket paths are limited to 108 bytes.
        anyhow::ensure!(
            control.as_os_str().len() < 100,
            "faultfs control socket path too long (use a shorter run directory): {}",
            control.display()
        );
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let _ = std::fs::remove_file(control);
        let process = Command::new(binary)
            .arg(backing)
            .arg(mountpoint)
            .arg("--control")
            .arg(control)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut faultfs = FaultFs { process, mountpoint: mountpoint.to_owned(), control: control.to_owned() };
        // The control socket is bound once the file system is mounted: a `stats` answer
        // means it is ready.
        let deadline = Instant::now() + FAULTFS_TIMEOUT;
        loop {
            if faultfs.command("stats").is_ok() {
                return Ok(faultfs);
            }
            if let Ok(Some(status)) = faultfs.process.try_wait() {
                let logged = std::fs::read_to_string(log).unwrap_or_default();
                anyhow::bail!("cairn-faultfs exited ({status}) before mounting {}:\n{logged}", mountpoint.display());
            }
            if Instant::now() > deadline {
                let _ = faultfs.process.kill();
                anyhow::bail!("cairn-faultfs did not mount {} within {FAULTFS_TIMEOUT:?}", mountpoint.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends one command line; its one-line answer.
    fn command(&self, command: &str) -> anyhow::Result<String> {
        let stream = UnixStream::connect(&self.control)
            .with_context(|| format!("connecting to faultfs at {}", self.control.display()))?;
        stream.set_read_timeout(Some(FAULTFS_TIMEOUT))?;
        let mut writer = stream.try_clone()?;
        writeln!(writer, "{command}")?;
        let mut answer = String::new();
        BufReader::new(stream).read_line(&mut answer)?;
        Ok(answer.trim().to_owned())
    }

    fn unmount(&mut self) -> anyhow::Result<()> {
        let asked = self.command("unmount");
        let deadline = Instant::now() + FAULTFS_TIMEOUT;
        while asked.is_ok() && Instant::now() < deadline {
            if let Ok(Some(_)) = self.process.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.process.kill();
        let _ = self.process.wait();
        if is_mounted(&self.mountpoint) {
            // The process is gone but the kernel still has the mount (busy, or killed):
            // detach it.
            run("fusermount3", &["-u", "-z", &self.mountpoint.display().to_string()])?;
        }
        Ok(())
    }
}

/// Whether `path` is a mount point now (in this process's mount namespace).
pub(crate) fn is_mounted(path: &Path) -> bool {
    // Canonicalize the parent only: a mount whose FUSE server died cannot be stat'ed.
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else { return false };
    let Ok(parent) = std::fs::canonicalize(if parent.as_os_str().is_empty() { Path::new(".") } else { parent }) else {
        return false;
    };
    let path = parent.join(name);
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    let wanted = path.display().to_string().replace(' ', "\\040");
    mountinfo.lines().any(|line| line.split_whitespace().nth(4) == Some(wanted.as_str()))
}
