//! Stage 1: SHA-256 of the file, checked against the durable content index.

use std::io::{self, Read};

use sha2::{Digest, Sha256};

use crate::state::{State, StateError, Stored};

/// Read size for every streaming stage: large enough to be cheap per syscall, small enough
/// that a worker never holds much.
pub const CHUNK: usize = 1 << 20;

/// A reader that hashes every byte it passes on, so a stage that reads the file anyway
/// can prove what it read.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The digest of everything read, and how many bytes that was.
    pub fn finish(self) -> ([u8; 32], u64) {
        (self.hasher.finalize().into(), self.bytes)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Hashes a reader to its end with a bounded buffer; returns the digest and the byte count.
pub fn hash<R: Read>(reader: R) -> io::Result<([u8; 32], u64)> {
    let mut hashing = HashingReader::new(reader);
    let mut buf = vec![0u8; CHUNK];
    loop {
        match hashing.read(&mut buf) {
            Ok(0) => return Ok(hashing.finish()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// A writer that hashes every byte it passes on, so a restore can prove what it wrote.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: io::Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The digest of everything written, how many bytes that was, and the inner writer.
    pub fn finish(self) -> ([u8; 32], u64, W) {
        (self.hasher.finalize().into(), self.bytes, self.inner)
    }
}

impl<W: io::Write> io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The object that already holds this content, if it was backed up before.
pub fn known(state: &State, sha256: &[u8; 32]) -> Result<Option<Stored>, StateError> {
    state.object_for(sha256)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_hash_matches_one_shot() {
        for len in [0usize, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let (digest, n) = hash(&data[..]).unwrap();
            assert_eq!(n, len as u64);
            assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(&data)), "len {len}");
        }
    }

    #[test]
    fn known_vector() {
        let (digest, _) = hash(&b"abc"[..]).unwrap();
        assert_eq!(
            hex::encode(digest),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
