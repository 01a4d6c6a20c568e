//! Stage 1: SHA-256 of the file, checked against the durable content index.

use std::io::{self, Read};

use sha2::{Digest, Sha256};

use crate::state::{State, StateError, Stored};

/// Read size for every streaming stage: large enough to be cheap per syscall, small enough
/// that a worker never holds much.
pub const CHUNK: usize = 1 << 20;

/// Hashes a reader to its end with a bounded buffer; returns the digest and the byte count.
pub fn hash<R: Read>(mut reader: R) -> io::Result<([u8; 32], u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hasher.finalize().into(), total))
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
