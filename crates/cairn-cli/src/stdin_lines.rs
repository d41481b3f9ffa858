use std::io::{self, BufRead};

use bytes::Bytes;
use tokio::sync::mpsc;

/// Lines read ahead of the producer, so a full batch can form while a request is out.
const LINES_BUFFERED_MAX: usize = 2 * crate::record_batcher::BATCH_RECORDS_MAX;

/// Reads stdin on its own thread and hands over its lines, each without its trailing
/// `\n`; an empty line is a line too. A plain thread rather than a tokio blocking task,
/// so a read still blocked on stdin never delays the process's exit.
pub fn stdin_lines() -> mpsc::Receiver<io::Result<Bytes>> {
    let (sender, receiver) = mpsc::channel(LINES_BUFFERED_MAX);
    std::thread::spawn(move || {
        let mut stdin = io::stdin().lock();
        loop {
            let line = read_line(&mut stdin);
            let finished = !matches!(line, Ok(Some(_)));
            let Some(line) = line.transpose() else { break };
            if sender.blocking_send(line).is_err() || finished {
                break;
            }
        }
    });
    receiver
}

/// The next line without its `\n`, or `None` at the end of input.
pub fn read_line(reader: &mut impl BufRead) -> io::Result<Option<Bytes>> {
    let mut line = Vec::new();
    if reader.read_until(b'\n', &mut line)? == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    Ok(Some(Bytes::from(line)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<Bytes> {
        let mut reader = io::Cursor::new(input.to_vec());
        let mut lines = Vec::new();
        while let Some(line) = read_line(&mut reader).expect("read from memory") {
            lines.push(line);
        }
        lines
    }

    #[test]
    fn strips_only_the_trailing_newline() {
        assert_eq!(lines(b"a\n\n b \r\nlast"), vec!["a", "", " b \r", "last"]);
        assert_eq!(lines(b"a\n"), vec!["a"]);
        assert!(lines(b"").is_empty());
        assert_eq!(lines(b"\n"), vec![""]);
        assert_eq!(lines(&[0xff, b'\n']), vec![Bytes::from_static(&[0xff])]);
    }
}
