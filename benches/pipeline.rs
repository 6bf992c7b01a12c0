//! Throughput of the per-line stages around detection: splitting a file's bytes into lines (the
//! file source's reader) and encoding log records as OTLP protobuf (the OTLP sink).
//!
//! `cargo bench --bench pipeline`. `TAILGUARD_BENCH_MIB` sets the generated log's size (default 64).

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tailguard::event::{Attributes, Context, Event, Origin};
use tailguard::sinks::otlp::encode::LogsEncoder;
use tailguard::sources::file::{LineAttributes, LineReader, MidLine, file_attributes};

mod cilog;
use cilog::{bench_log_bytes, generate_log};

fn bench(c: &mut Criterion) {
    let log = generate_log(bench_log_bytes(64));

    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Bytes(log.len() as u64));
    g.sample_size(10);
    // The file source reads 64 KiB (read_batch_bytes) at a time into a
    // buffer of its own, which the lines read whole from it share; the copy
    // stands in for the read.
    g.bench_function("line_reader_64k_reads", |b| {
        let mut lines = Vec::new();
        b.iter(|| {
            let mut reader = LineReader::new(0, MidLine::None, 1 << 20);
            let mut count = 0;
            for chunk in log.chunks(64 << 10) {
                lines.clear();
                reader.feed_shared(&bytes::Bytes::copy_from_slice(chunk), &mut lines);
                count += lines.len();
            }
            black_box(count)
        })
    });

    // Events as the file source makes them (the file's attributes in one
    // list every line shares, the line's offset its own), encoded in batches
    // of 1,000.
    let mut context = Context::default();
    context.resource.insert("host.name", "runner-17");
    context.resource.insert("service.name", "tailguard");
    let context = Arc::new(context);
    let origin = Arc::new(Origin {
        source: Arc::from("runner_logs"),
        path: Some(Arc::from(Path::new("/var/log/runner/job.log"))),
        ..Origin::default()
    });
    let file_attributes = file_attributes(
        Path::new("/var/log/runner/job.log"),
        &Arc::from("/var/log/runner/job.log"),
        &Arc::from("fe00-9b8007-18ea754b30337eaa"),
        LineAttributes::ALL,
    );
    let mut offset = 0i64;
    let events: Vec<Event> = log
        .split(|&b| b == b'\n')
        .map(|line| {
            let mut event = Event::new(line.to_vec(), Arc::clone(&origin), Arc::clone(&context));
            event.attributes = Attributes::with_shared(Arc::clone(&file_attributes));
            event.attributes.insert("tailguard.file.offset", offset);
            offset += line.len() as i64 + 1;
            event
        })
        .collect();
    g.bench_function("otlp_encode_logs", |b| {
        let mut encoder = LogsEncoder::default();
        b.iter(|| {
            let mut bytes = 0;
            for batch in events.chunks(1000) {
                bytes += encoder.encode(batch.iter()).len();
            }
            black_box(bytes)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
