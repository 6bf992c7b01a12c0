use super::*;

fn config(max_size: u64, when_full: WhenFull) -> DiskBufferConfig {
    DiskBufferConfig {
        max_size: ByteSize(max_size),
        when_full,
        fsync: false,
    }
}

fn payload(i: usize) -> Vec<u8> {
    format!("record-{i:04}-").repeat(20).into_bytes()
}

async fn read_all(reader: &mut Reader, n: usize) -> Vec<Entry> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(reader.next().await.unwrap().expect("a record"));
    }
    out
}

#[tokio::test]
async fn records_come_back_in_order_and_delivered_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, mut reader) = open(dir.path(), &config(1 << 20, WhenFull::Block)).unwrap();
    for i in 0..1000 {
        writer.append(&payload(i), i as u32).await.unwrap();
    }
    let entries = read_all(&mut reader, 1000).await;
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.payload, payload(i));
        assert_eq!(e.count, i as u32);
    }
    assert!(
        list_segments(dir.path()).unwrap().len() > 1,
        "the 128 KiB segment limit rolled over"
    );
    for e in &entries {
        reader.delivered(e.id).unwrap();
    }
    // Only the segment being written remains.
    assert_eq!(list_segments(dir.path()).unwrap().len(), 1);
    drop(writer);
    assert!(
        reader.next().await.unwrap().is_none(),
        "writer gone and drained"
    );
}

#[tokio::test]
async fn a_restart_resends_exactly_the_undelivered_records() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut writer, mut reader) = open(dir.path(), &config(1 << 20, WhenFull::Block)).unwrap();
        for i in 0..10 {
            writer.append(&payload(i), 1).await.unwrap();
        }
        let entries = read_all(&mut reader, 6).await;
        // 0..=2 delivered, 4 delivered out of order, 3 and 5 still in flight.
        for id in [0, 1, 2, 4] {
            reader.delivered(entries[id].id).unwrap();
        }
    } // a crash: nothing else is written
    let (_writer, mut reader) = open(dir.path(), &config(1 << 20, WhenFull::Block)).unwrap();
    let again: Vec<Vec<u8>> = read_all(&mut reader, 7)
        .await
        .into_iter()
        .map(|e| e.payload)
        .collect();
    let expected: Vec<Vec<u8>> = (3..10).map(payload).collect();
    // At least once: 4 was delivered but sits behind undelivered 3.
    assert_eq!(again, expected);
}

#[tokio::test]
async fn a_corrupt_record_skips_its_segment_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut writer, _reader) = open(dir.path(), &config(1 << 20, WhenFull::Block)).unwrap();
        for i in 0..3 {
            writer.append(&payload(i), 1).await.unwrap();
        }
    }
    {
        // The next run writes a segment of its own.
        let (mut writer, _reader) = open(dir.path(), &config(1 << 20, WhenFull::Block)).unwrap();
        writer.append(&payload(99), 1).await.unwrap();
    }
    let first = segment_path(dir.path(), 0);
    let mut bytes = fs::read(&first).unwrap();
    let second_record_payload = 4 + 2 * 12 + payload(0).len() + 5;
    bytes[second_record_payload] ^= 0xff;
    fs::write(&first, bytes).unwrap();

    let (_writer, mut reader) = open(dir.path(), &config(1 << 20, WhenFull::Block)).unwrap();
    let got: Vec<Vec<u8>> = read_all(&mut reader, 2)
        .await
        .into_iter()
        .map(|e| e.payload)
        .collect();
    assert_eq!(got, [payload(0), payload(99)]);
    assert_eq!(reader.stats().corrupt_segments_skipped, 1);
}

#[tokio::test]
async fn block_holds_the_writer_until_delivery_frees_space() {
    use std::future::Future;
    use std::task::{Context, Poll};
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, mut reader) = open(dir.path(), &config(256 * 1024, WhenFull::Block)).unwrap();
    let mut written = 0;
    loop {
        let record = payload(written);
        let mut append = std::pin::pin!(writer.append(&record, 1));
        let waker = std::task::Waker::noop();
        match append.as_mut().poll(&mut Context::from_waker(waker)) {
            Poll::Ready(result) => {
                result.unwrap();
                written += 1;
            }
            Poll::Pending => break,
        }
        assert!(written < 10_000, "the buffer never filled");
    }
    assert!(written > 100);
    // Deliver everything written so far; the blocked append now fits.
    for entry in read_all(&mut reader, written).await {
        reader.delivered(entry.id).unwrap();
    }
    writer.append(&payload(written), 1).await.unwrap();
    assert_eq!(
        reader.next().await.unwrap().unwrap().payload,
        payload(written)
    );
    assert_eq!(writer.stats().segments_dropped, 0);
}

#[tokio::test]
async fn drop_oldest_makes_room_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, _reader) =
        open(dir.path(), &config(256 * 1024, WhenFull::DropOldest)).unwrap();
    for i in 0..2000 {
        writer.append(&payload(i), 1).await.unwrap();
    }
    let stats = writer.stats();
    assert!(stats.segments_dropped > 0);
    assert!(stats.bytes_on_disk <= 256 * 1024, "{stats:?}");
}

#[test]
fn sizes_parse_with_units() {
    assert_eq!(parse_size("1GiB"), Some(1 << 30));
    assert_eq!(parse_size("512 MiB"), Some(512 << 20));
    assert_eq!(parse_size("10MB"), Some(10_000_000));
    assert_eq!(parse_size("1.5GiB"), None);
    assert_eq!(parse_size("12"), Some(12));
}
