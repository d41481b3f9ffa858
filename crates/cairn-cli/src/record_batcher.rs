use cairn_types::Record;

/// Most records `produce` puts in one append request.
pub const BATCH_RECORDS_MAX: usize = 1_000;
/// Most record bytes (`Record::encoded_len`) `produce` puts in one append request; a
/// single larger record still goes alone.
pub const BATCH_BYTES_MAX: usize = 1024 * 1024;

/// Groups records into append requests within `BATCH_RECORDS_MAX` and `BATCH_BYTES_MAX`.
#[derive(Debug, Default)]
pub struct RecordBatcher {
    records: Vec<Record>,
    bytes: usize,
}

impl RecordBatcher {
    /// Adds a record. When it does not fit in the current batch, returns that batch
    /// (to be sent first) and starts the next one with the record.
    pub fn push(&mut self, record: Record) -> Option<Vec<Record>> {
        let record_bytes = record.encoded_len();
        let overflows =
            self.records.len() >= BATCH_RECORDS_MAX || self.bytes.saturating_add(record_bytes) > BATCH_BYTES_MAX;
        let full_batch = (overflows && !self.records.is_empty()).then(|| self.take());
        self.bytes += record_bytes;
        self.records.push(record);
        full_batch
    }

    /// Whether no further record fits.
    pub fn is_full(&self) -> bool {
        self.records.len() >= BATCH_RECORDS_MAX || self.bytes >= BATCH_BYTES_MAX
    }

    /// The batch so far, leaving this one empty.
    pub fn take(&mut self) -> Vec<Record> {
        self.bytes = 0;
        std::mem::take(&mut self.records)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn record(value_bytes: usize) -> Record {
        Record { key: None, headers: Vec::new(), value: Bytes::from(vec![b'x'; value_bytes]) }
    }

    /// Pushes every record and returns the batch sizes, the last one included.
    fn batch_sizes(records: impl IntoIterator<Item = Record>) -> Vec<usize> {
        let mut batcher = RecordBatcher::default();
        let mut sizes = Vec::new();
        for record in records {
            if let Some(batch) = batcher.push(record) {
                sizes.push(batch.len());
            }
        }
        let last = batcher.take();
        if !last.is_empty() {
            sizes.push(last.len());
        }
        sizes
    }

    #[test]
    fn splits_at_the_record_count() {
        assert_eq!(batch_sizes((0..2_500).map(|_| record(10))), vec![1_000, 1_000, 500]);
    }

    #[test]
    fn splits_at_the_byte_size() {
        let per_record = record(100 * 1024).encoded_len();
        let fitting = BATCH_BYTES_MAX / per_record;
        assert_eq!(batch_sizes((0..fitting + 1).map(|_| record(100 * 1024))), vec![fitting, 1]);
    }

    #[test]
    fn an_oversized_record_goes_alone() {
        assert_eq!(batch_sizes([record(1), record(2 * BATCH_BYTES_MAX), record(1)]), vec![1, 1, 1]);
    }

    #[test]
    fn keeps_order() {
        let mut batcher = RecordBatcher::default();
        let mut sent = Vec::new();
        for value in 0..1_500u32 {
            let record = Record { key: None, headers: Vec::new(), value: Bytes::from(value.to_string()) };
            if let Some(batch) = batcher.push(record) {
                sent.extend(batch);
            }
        }
        sent.extend(batcher.take());
        let values: Vec<String> = sent.iter().map(|r| String::from_utf8_lossy(&r.value).into_owned()).collect();
        let expected: Vec<String> = (0..1_500u32).map(|value| value.to_string()).collect();
        assert_eq!(values, expected);
    }
}
