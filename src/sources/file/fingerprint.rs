//! File identity.
//!
//! A file is identified by its device and inode number (which survive
//! renames, are shared by a symlink and its target, and stay put under
//! copytruncate) plus a CRC32 of its first bytes ("head", up to
//! `fingerprint_bytes`). The head is recorded as the file grows, so it works
//! for empty, one-line and unterminated files: an empty file has an empty
//! head that anything extends. Whenever a file is (re)identified from
//! outside an open handle (restart, a handle reopened after it was closed
//! for `max_open_files`) and before new data of an open file is read, the
//! recorded head is checked against the file again. A different head on the
//! same device and inode means the inode was reused or the file was
//! truncated and rewritten: it is a new file, read from the start. Two
//! different files that merely share a first line never share an inode, so
//! they are never merged.
//!
//! The string [`file_id`] given to receivers is derived from the device,
//! inode, the inode's birth time where the file system records one, and a
//! generation counter bumped on every truncation or inode reuse.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::time::UNIX_EPOCH;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct FileKey {
    pub dev: u64,
    pub ino: u64,
}

impl FileKey {
    pub(crate) fn of(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// CRC32 of the first `len` bytes of a file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Head {
    pub len: u32,
    pub crc: u32,
}

/// Result of checking a recorded head against a file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeadCheck {
    /// The file starts with the recorded bytes; the returned head may cover
    /// more bytes (up to the limit) than the recorded one.
    Same(Head),
    /// The file is shorter than the recorded head or starts differently.
    Different,
}

fn read_prefix(file: &File, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut buf[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// Checks `recorded` against the file's first bytes and extends it to up to
/// `limit` bytes (never beyond `max_len`, the bytes known to be in the file).
pub(crate) fn check_head(
    file: &File,
    recorded: Head,
    limit: usize,
    max_len: u64,
) -> io::Result<HeadCheck> {
    let want = (limit as u64).min(max_len).max(u64::from(recorded.len)) as usize;
    let bytes = read_prefix(file, want)?;
    Ok(compare_head(&bytes, recorded))
}

/// Pure part of [`check_head`]: `bytes` are the file's first bytes.
pub(crate) fn compare_head(bytes: &[u8], recorded: Head) -> HeadCheck {
    let rlen = recorded.len as usize;
    if bytes.len() < rlen || crc32fast::hash(&bytes[..rlen]) != recorded.crc {
        return HeadCheck::Different;
    }
    HeadCheck::Same(Head {
        len: bytes.len() as u32,
        crc: crc32fast::hash(bytes),
    })
}

/// What to do with a file that has a checkpoint entry for its device and
/// inode (at start-up or when a closed handle is reopened).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Resume {
    /// Same file: continue at the recorded offset with the (extended) head.
    At(Head),
    /// Same inode, different content (inode reuse or rewrite): a new file.
    NewFile,
    /// Same file but shorter than the recorded offset: truncated.
    Truncated,
}

/// Decides how to treat a file given the checkpointed `head` and `offset`.
pub(crate) fn decide_resume(prefix: &[u8], size: u64, head: Head, offset: u64) -> Resume {
    match compare_head(prefix, head) {
        HeadCheck::Different => Resume::NewFile,
        HeadCheck::Same(_) if size < offset => Resume::Truncated,
        HeadCheck::Same(h) => Resume::At(h),
    }
}

/// Reads the prefix needed by [`decide_resume`] and applies it.
pub(crate) fn resume(
    file: &File,
    size: u64,
    head: Head,
    offset: u64,
    limit: usize,
) -> io::Result<Resume> {
    let want = (limit as u64).min(size).max(u64::from(head.len)) as usize;
    let prefix = read_prefix(file, want)?;
    Ok(decide_resume(&prefix, size, head, offset))
}

/// Birth time in nanoseconds, where the file system records it.
pub(crate) fn birth_nanos(meta: &Metadata) -> Option<u128> {
    meta.created()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .filter(|n| *n != 0)
}

/// The stable identity string sent as `tailguard.file.id`.
pub(crate) fn file_id(key: FileKey, birth: Option<u128>, generation: u32) -> String {
    let mut id = format!("{:x}-{:x}", key.dev, key.ino);
    if let Some(b) = birth {
        id.push_str(&format!("-{b:x}"));
    }
    if generation > 0 {
        id.push_str(&format!(".{generation}"));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_of(bytes: &[u8]) -> Head {
        Head {
            len: bytes.len() as u32,
            crc: crc32fast::hash(bytes),
        }
    }

    #[test]
    fn empty_head_matches_anything_and_grows() {
        assert_eq!(
            compare_head(b"hello", Head::default()),
            HeadCheck::Same(head_of(b"hello"))
        );
        assert_eq!(
            compare_head(b"", Head::default()),
            HeadCheck::Same(Head::default())
        );
    }

    #[test]
    fn one_line_and_unterminated_files_are_told_apart() {
        let a = head_of(b"line one\n");
        assert_eq!(
            compare_head(b"line one\nmore", a),
            HeadCheck::Same(head_of(b"line one\nmore"))
        );
        assert_eq!(compare_head(b"line two\n", a), HeadCheck::Different);
        assert_eq!(
            compare_head(b"line", a),
            HeadCheck::Different,
            "shorter than the head"
        );
        let partial = head_of(b"no newline");
        assert!(matches!(
            compare_head(b"no newline yet\n", partial),
            HeadCheck::Same(_)
        ));
    }

    /// The inode-reuse case forced: same device and inode as a checkpoint
    /// entry, but the file now starts differently, so it is a new file.
    #[test]
    fn same_inode_different_head_is_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.log");
        std::fs::write(&path, b"old first line\nold second\n").unwrap();
        let old = head_of(b"old first line\nold second\n");
        // Rewrite in place: same inode for sure.
        std::fs::write(&path, b"new first line\nnew second line, longer\n").unwrap();
        let file = File::open(&path).unwrap();
        let size = file.metadata().unwrap().len();
        assert_eq!(resume(&file, size, old, 26, 1024).unwrap(), Resume::NewFile);
        // Same content prefix, shorter than the offset: truncated.
        std::fs::write(&path, b"old first line\nold second\n").unwrap();
        assert_eq!(resume(&file, 26, old, 30, 1024).unwrap(), Resume::Truncated);
        // Same content: resume, head extended up to the limit.
        std::fs::write(&path, b"old first line\nold second\nthird\n").unwrap();
        assert_eq!(
            resume(&file, 32, old, 26, 1024).unwrap(),
            Resume::At(head_of(b"old first line\nold second\nthird\n"))
        );
        assert_eq!(
            resume(&file, 32, old, 26, 4).unwrap(),
            Resume::At(old),
            "never shrinks"
        );
        // Two files sharing a first line are not merged: different inodes.
        let other = dir.path().join("g.log");
        std::fs::write(&other, b"old first line\nold second\n").unwrap();
        let a = FileKey::of(&std::fs::metadata(&path).unwrap());
        let b = FileKey::of(&std::fs::metadata(&other).unwrap());
        assert_ne!(a, b);
        assert_ne!(file_id(a, None, 0), file_id(b, None, 0));
        assert_ne!(file_id(a, None, 0), file_id(a, None, 1));
    }
}
