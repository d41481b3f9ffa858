//! Mounts a `FaultFs` for other processes and takes fault commands on a Unix socket, one
//! line each, answered with one line:
//!
//! ```text
//! drop                 discard every unsynced write (a power cut; kill the users first)
//! delay-fsync MS       every fsync takes at least MS milliseconds
//! resume               end the fsync delay
//! stats                counters (fsyncs, fdatasyncs, dirty and dropped bytes, ...)
//! unmount              unmount and exit
//! ```
//!
//! For example `echo drop | socat - UNIX-CONNECT:/run/faultfs.sock`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use cairn_faultfs::{Control, FaultFs, FaultFsOptions};
use clap::Parser;

/// A FUSE pass-through of BACKING at MOUNTPOINT that loses unsynced writes on command.
#[derive(Parser)]
struct Args {
    /// The directory that holds what survives a power cut.
    backing: PathBuf,
    /// Where to mount (an existing, empty directory).
    mountpoint: PathBuf,
    /// The Unix socket that takes commands.
    #[arg(long)]
    control: PathBuf,
    /// Unsynced bytes kept in memory before the largest files are written back early.
    #[arg(long, default_value_t = cairn_faultfs::DIRTY_BYTES_MAX_DEFAULT)]
    dirty_bytes_max: u64,
}

enum Next {
    Continue,
    Unmount,
}

fn serve(stream: UnixStream, control: &Control) -> anyhow::Result<Next> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let (answer, next) = match words.as_slice() {
        ["drop"] => {
            let dropped = control.drop_unsynced();
            (format!("dropped {} bytes of {} files", dropped.bytes, dropped.files), Next::Continue)
        }
        ["delay-fsync", ms] => match ms.parse::<u64>() {
            Ok(ms) => {
                control.delay_fsync(Duration::from_millis(ms));
                (format!("fsync delayed by {ms} ms"), Next::Continue)
            }
            Err(err) => (format!("error: {ms}: {err}"), Next::Continue),
        },
        ["resume"] => {
            control.resume();
            ("resumed".into(), Next::Continue)
        }
        ["stats"] => (format!("{:?}", control.stats()), Next::Continue),
        ["unmount"] => ("unmounting".into(), Next::Unmount),
        _ => (format!("error: unknown command {:?}", line.trim()), Next::Continue),
    };
    writeln!(writer, "{answer}")?;
    Ok(next)
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let args = Args::parse();
    let options = FaultFsOptions { dirty_bytes_max: args.dirty_bytes_max };
    let fs = FaultFs::mount(&args.backing, &args.mountpoint, &options)?;
    let _ = std::fs::remove_file(&args.control);
    let listener = UnixListener::bind(&args.control).with_context(|| format!("bind {}", args.control.display()))?;
    eprintln!(
        "mounted {} over {}; commands on {}",
        args.mountpoint.display(),
        args.backing.display(),
        args.control.display()
    );
    let control = fs.control();
    for stream in listener.incoming() {
        match stream.map_err(anyhow::Error::from).and_then(|stream| serve(stream, &control)) {
            Ok(Next::Continue) => {}
            Ok(Next::Unmount) => break,
            Err(err) => eprintln!("control connection failed: {err:#}"),
        }
    }
    let _ = std::fs::remove_file(&args.control);
    fs.unmount()?;
    Ok(())
}
