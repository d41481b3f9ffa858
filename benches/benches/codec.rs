use bytes::Bytes;
use cairn_benches::records;
use cairn_types::{decode_batch, encode_batch};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_codec");
    for count in [100usize, 1_000] {
        let batch = records(count, 1024);
        let timestamps = vec![1_700_000_000_000u64; count];
        let encoded = Bytes::from(encode_batch(0, &batch, &[], &timestamps));
        group.throughput(Throughput::Bytes(encoded.len() as u64));
        group.bench_function(format!("encode_{count}x1KiB"), |b| b.iter(|| encode_batch(0, &batch, &[], &timestamps)));
        group.bench_function(format!("decode_{count}x1KiB"), |b| b.iter(|| decode_batch(&encoded).expect("valid")));
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
