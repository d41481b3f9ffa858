//! What one file holds beyond its backing file: the bytes written and the size changes
//! made since its last fsync. The backing file is the disk; the overlay is the page cache
//! that a power cut empties.
//!
//! Readers see the backing file cut to `cut` (the smallest size the file was truncated to
//! since the last sync: the backing bytes past it are no longer the file's), zeros up to
//! `size`, and the dirty extents on top. `sync_to` makes the backing file equal to that
//! view; dropping the overlay returns the file to its last synced state.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

#[derive(Debug)]
pub(crate) struct Overlay {
    /// The file's size as readers see it.
    size: u64,
    /// The smallest size the file was truncated to since the last sync, if it was.
    cut: Option<u64>,
    /// Written, unsynced bytes: start offset → bytes. Never overlapping nor adjacent.
    extents: BTreeMap<u64, Vec<u8>>,
    /// Sum of the extents' lengths.
    dirty_bytes: u64,
}

impl Overlay {
    /// An overlay with nothing dirty over a backing file of `backing_size` bytes.
    pub(crate) fn new(backing_size: u64) -> Overlay {
        Overlay { size: backing_size, cut: None, extents: BTreeMap::new(), dirty_bytes: 0 }
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    pub(crate) fn dirty_bytes(&self) -> u64 {
        self.dirty_bytes
    }

    /// Records a write of `data` at `offset`.
    pub(crate) fn write(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        // Extents that overlap or touch [offset, end) merge with it into one.
        let touching: Vec<u64> = self
            .extents
            .range(..=end)
            .filter(|(start, bytes)| **start + bytes.len() as u64 >= offset)
            .map(|(start, _)| *start)
            .collect();
        let merged_start = touching.first().map_or(offset, |first| (*first).min(offset));
        let merged_end =
            touching.last().map_or(end, |last| (last + self.extents.get(last).map_or(0, |b| b.len() as u64)).max(end));
        let mut merged = vec![0u8; (merged_end - merged_start) as usize];
        for start in touching {
            if let Some(bytes) = self.extents.remove(&start) {
                self.dirty_bytes -= bytes.len() as u64;
                let at = (start - merged_start) as usize;
                merged[at..at + bytes.len()].copy_from_slice(&bytes);
            }
        }
        let at = (offset - merged_start) as usize;
        merged[at..at + data.len()].copy_from_slice(data);
        self.dirty_bytes += merged.len() as u64;
        self.extents.insert(merged_start, merged);
        self.size = self.size.max(end);
    }

    /// Records a change of the file's size (`ftruncate`).
    pub(crate) fn set_size(&mut self, size: u64) {
        if size < self.size {
            self.cut = Some(self.cut.map_or(size, |cut| cut.min(size)));
            let beyond: Vec<u64> = self.extents.range(size..).map(|(start, _)| *start).collect();
            for start in beyond {
                if let Some(bytes) = self.extents.remove(&start) {
                    self.dirty_bytes -= bytes.len() as u64;
                }
            }
            if let Some((start, bytes)) = self.extents.range_mut(..size).next_back() {
                let keep = (size - *start) as usize;
                if bytes.len() > keep {
                    self.dirty_bytes -= (bytes.len() - keep) as u64;
                    bytes.truncate(keep);
                }
            }
        }
        self.size = size;
    }

    /// Reads up to `len` bytes at `offset` as readers see the file.
    pub(crate) fn read(&self, backing: &File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let end = offset.saturating_add(len).min(self.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut buffer = vec![0u8; (end - offset) as usize];
        let backing_end = backing.metadata()?.len().min(self.cut.unwrap_or(u64::MAX)).min(end);
        if offset < backing_end {
            read_exact_or_short(backing, &mut buffer[..(backing_end - offset) as usize], offset)?;
        }
        let first = self.extents.range(..offset).next_back().map_or(offset, |(start, _)| *start);
        for (start, bytes) in self.extents.range(first..end) {
            let extent_end = start + bytes.len() as u64;
            let from = (*start).max(offset);
            let to = extent_end.min(end);
            if from < to {
                buffer[(from - offset) as usize..(to - offset) as usize]
                    .copy_from_slice(&bytes[(from - start) as usize..(to - start) as usize]);
            }
        }
        Ok(buffer)
    }

    /// Makes the backing file what readers see (without syncing it).
    pub(crate) fn write_to(&self, backing: &File) -> io::Result<()> {
        if let Some(cut) = self.cut {
            backing.set_len(cut)?;
        }
        for (start, bytes) in &self.extents {
            backing.write_all_at(bytes, *start)?;
        }
        backing.set_len(self.size)
    }
}

/// Reads into `buffer` at `offset`; bytes past the file's end stay zero.
fn read_exact_or_short(file: &File, buffer: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buffer.len() {
        match file.read_at(&mut buffer[done..], offset + done as u64) {
            Ok(0) => return Ok(()),
            Ok(read) => done += read,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn backing(bytes: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, bytes).expect("write backing");
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).expect("open backing");
        (dir, file)
    }

    #[test]
    fn writes_overlay_the_backing_bytes_until_synced() {
        let (_dir, file) = backing(b"0123456789");
        let mut overlay = Overlay::new(10);
        overlay.write(2, b"ab");
        overlay.write(8, b"xyz");
        assert_eq!(overlay.size(), 11);
        assert_eq!(overlay.read(&file, 0, 100).expect("read"), b"01ab4567xyz");
        assert_eq!(overlay.read(&file, 3, 6).expect("read"), b"b4567x");
        assert_eq!(std::fs::read(file_path(&_dir)).expect("backing"), b"0123456789", "backing untouched");
        overlay.write_to(&file).expect("write back");
        assert_eq!(std::fs::read(file_path(&_dir)).expect("backing"), b"01ab4567xyz");
    }

    fn file_path(dir: &tempfile::TempDir) -> std::path::PathBuf {
        dir.path().join("f")
    }

    #[test]
    fn overlapping_and_adjacent_writes_merge() {
        let (_dir, file) = backing(b"");
        let mut overlay = Overlay::new(0);
        overlay.write(4, b"bbbb");
        overlay.write(0, b"aaaa");
        overlay.write(6, b"cccc");
        assert_eq!(overlay.extents.len(), 1);
        assert_eq!(overlay.dirty_bytes(), 10);
        assert_eq!(overlay.read(&file, 0, 10).expect("read"), b"aaaabbcccc");
    }

    #[test]
    fn truncate_hides_backing_bytes_and_extension_reads_zeros() {
        let (dir, file) = backing(b"0123456789");
        let mut overlay = Overlay::new(10);
        overlay.write(6, b"zz");
        overlay.set_size(4);
        overlay.set_size(8);
        assert_eq!(overlay.dirty_bytes(), 0);
        assert_eq!(overlay.read(&file, 0, 100).expect("read"), b"0123\0\0\0\0");
        overlay.write_to(&file).expect("write back");
        assert_eq!(std::fs::read(dir.path().join("f")).expect("backing"), b"0123\0\0\0\0");
    }

    proptest! {
        /// Against a model: a Vec<u8> that takes every write and truncate.
        #[test]
        fn reads_and_write_back_match_a_byte_vector(
            initial in proptest::collection::vec(any::<u8>(), 0..64),
            ops in proptest::collection::vec((0u64..96, proptest::collection::vec(any::<u8>(), 0..24), any::<bool>()), 0..24),
        ) {
            let (dir, file) = backing(&initial);
            let mut model = initial.clone();
            let mut overlay = Overlay::new(initial.len() as u64);
            for (offset, data, truncate) in ops {
                if truncate {
                    model.resize(offset as usize, 0);
                    overlay.set_size(offset);
                } else if !data.is_empty() {
                    let end = offset as usize + data.len();
                    if model.len() < end {
                        model.resize(end, 0);
                    }
                    model[offset as usize..end].copy_from_slice(&data);
                    overlay.write(offset, &data);
                }
                prop_assert_eq!(&overlay.read(&file, 0, 1000).expect("read"), &model);
            }
            prop_assert_eq!(std::fs::read(dir.path().join("f")).expect("backing"), initial);
            overlay.write_to(&file).expect("write back");
            prop_assert_eq!(std::fs::read(dir.path().join("f")).expect("backing"), model);
        }
    }
}
