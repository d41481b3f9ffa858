//! The partition log's append and read paths on a real RocksDB (fsync excluded: the Raft
//! log's group commit pays for it).

use std::sync::Arc;

use cairn_benches::records;
use cairn_storage::{PartitionLog, PartitionLogState, ReadLimits, Store, StoreOptions, WriteBatch};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn storage(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), &StoreOptions::default()).expect("open");
    let log = PartitionLog::new(Arc::clone(&store), 1);
    let mut state = PartitionLogState::default();
    let mut group = c.benchmark_group("partition_log");
    for count in [100usize, 1_000] {
        let batch_records = records(count, 1024);
        group.throughput(Throughput::Bytes((count * 1024) as u64));
        group.bench_function(format!("append_{count}x1KiB"), |b| {
            b.iter(|| {
                let mut batch = WriteBatch::default();
                log.append(&mut batch, &mut state, &batch_records, &[], 1);
                store.write(batch).expect("write");
            })
        });
    }
    let limits = ReadLimits { max_records: 1_000, max_bytes: 1 << 20 };
    group.throughput(Throughput::Bytes(1 << 20));
    group.bench_function("read_1MiB", |b| {
        let mut from = state.log_start_offset;
        b.iter(|| {
            let read = log.read(from, &state, state.next_offset, limits).expect("read");
            from = read.next_offset;
            if from + 1_000 >= state.next_offset {
                from = 0;
            }
        })
    });
    group.finish();
}

criterion_group!(benches, storage);
criterion_main!(benches);
