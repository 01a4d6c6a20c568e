//! Stage 5 of the backup pipeline: zstd compression, then OpenPGP symmetric encryption.
//!
//! The output is a plain OpenPGP message (SKESK v4 + SEIPD v1, AES-256, literal data holding a
//! zstd stream) so that a restore never depends on this program:
//! `gpg --batch --passphrase-file F -d file | zstd -d` gives back the original bytes.
//!
//! The passphrase is stretched once per [`Sealer`], not once per file: the key-encryption key
//! (KEK) is cached and each file gets a fresh random session key wrapped under it, which saves
//! ~40 ms of CPU per file.  All files of one `Sealer` therefore share S2K salt and KEK; a
//! password guess tested against one file is thereby tested against all of them, but they are
//! protected by the same passphrase anyway, so an attacker gains nothing, and each guess still
//! costs the full S2K.  A new `Sealer` draws a new salt unless built with [`Sealer::with_s2k`].

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use sequoia_openpgp as openpgp;

use openpgp::crypto::symmetric::{self, BlockCipherMode, PaddingMode, UnpaddingMode};
use openpgp::crypto::{Password, SessionKey, S2K};
use openpgp::packet::skesk::SKESK4;
use openpgp::packet::{Packet, SEIP, SKESK};
use openpgp::parse::buffered_reader::{self, BufferedReader};
use openpgp::parse::{Dearmor, PacketParser, PacketParserBuilder, PacketParserResult, Parse};
use openpgp::serialize::stream::{Encryptor, LiteralWriter, Message};
use openpgp::serialize::Serialize;
use openpgp::types::{DataFormat, HashAlgorithm, SymmetricAlgorithm};

/// The only payload cipher we emit; GnuPG 2.2 and every OpenPGP implementation support it.
const PAYLOAD_ALGO: SymmetricAlgorithm = SymmetricAlgorithm::AES256;

/// Every zstd frame starts with these bytes; gate 2 uses them to prove the payload is ours.
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// The largest iteration count OpenPGP can encode; affordable because we pay it only once.
const S2K_HASH_BYTES: u32 = 0x03e0_0000;

/// Floor for caller-supplied S2Ks; far below ours, but excludes trivially cheap ones.
const S2K_MIN_HASH_BYTES: u32 = 0x0010_0000;

/// Read granularity; bounds how much plaintext or ciphertext is in flight per call.
const CHUNK: usize = 64 * 1024;

/// Counts of one `seal` call, for the pipeline's statistics and space accounting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SealStats {
    pub plaintext_bytes: u64,
    pub sealed_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// Writing the output failed.  Kept as the raw `io::Error` so callers can react to ENOSPC
    /// (`raw_os_error() == Some(libc::ENOSPC)` / `ErrorKind::StorageFull`).
    #[error("writing output: {0}")]
    Io(#[source] io::Error),
    /// Reading the caller's input (plaintext for `seal`, sealed bytes otherwise) failed.
    #[error("reading input: {0}")]
    Input(#[source] io::Error),
    /// The OpenPGP or zstd layer failed: wrong passphrase, corrupt or truncated data, MDC error.
    #[error("crypto: {0}")]
    Crypto(String),
    /// Gate 2 rejection: the bytes are not a message this sealer produced.
    #[error("not sealed: {0}")]
    NotSealed(String),
    /// Bad construction parameters (empty passphrase, zstd level out of range, weak S2K).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

fn crypto(e: impl fmt::Display) -> SealError {
    SealError::Crypto(format!("{e:#}"))
}

/// Compresses and encrypts files; one instance is shared by all worker threads.
pub struct Sealer {
    /// Kept (encrypted in memory by sequoia) only to open messages whose S2K is not ours.
    passphrase: Password,
    s2k: S2K,
    kek: SessionKey,
    zstd_level: i32,
    /// Lets tests and callers prove that per-file work never runs the S2K.
    s2k_derivations: AtomicU64,
    /// Keys derived for other S2Ks (salts) met while opening: every file sealed by one
    /// earlier run shares its S2K, so a restore stretches the passphrase once per such run,
    /// not once per file. Bounded; the oldest entry goes first.
    foreign: Mutex<Vec<(S2K, SymmetricAlgorithm, SessionKey)>>,
}

/// How many foreign S2Ks [`Sealer`] remembers.
const FOREIGN_KEYS: usize = 64;

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("s2k", &self.s2k)
            .field("zstd_level", &self.zstd_level)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// Derives the key-encryption key ONCE (S2K iterated+salted, SHA256, strong iteration count,
    /// random salt) so that sealing a file costs no per-file S2K.
    pub fn new(passphrase: &[u8], zstd_level: i32) -> Result<Sealer, SealError> {
        let s2k = S2K::new_iterated(HashAlgorithm::SHA256, S2K_HASH_BYTES).map_err(crypto)?;
        Self::with_s2k(passphrase, s2k, zstd_level)
    }

    /// Like [`Sealer::new`] but reuses known S2K parameters (e.g. persisted from
    /// [`Sealer::s2k`]), so a restarted process can gate-check files sealed before the restart
    /// without a per-file S2K.
    pub fn with_s2k(passphrase: &[u8], s2k: S2K, zstd_level: i32) -> Result<Sealer, SealError> {
        check_passphrase(passphrase)?;
        check_zstd_level(zstd_level)?;
        check_s2k(&s2k)?;
        let passphrase = Password::from(passphrase);
        let kek = run_s2k(&passphrase, &s2k, PAYLOAD_ALGO).map_err(SealError::Crypto)?;
        Ok(Sealer {
            passphrase,
            s2k,
            kek,
            zstd_level,
            s2k_derivations: AtomicU64::new(1),
            foreign: Mutex::default(),
        })
    }

    /// The S2K (with salt) written into every SKESK; persist it to reuse the cached key later.
    pub fn s2k(&self) -> &S2K {
        &self.s2k
    }

    /// How many S2K derivations this sealer has run: 1 after construction, and it only grows
    /// when `open` meets a message with foreign S2K parameters.
    pub fn s2k_derivations(&self) -> u64 {
        self.s2k_derivations.load(Ordering::Relaxed)
    }

    /// Streams `input` -> zstd encoder -> OpenPGP literal data -> SEIPD v1 (AES-256) with a fresh
    /// random session key per call, wrapped in a SKESK v4 using the cached KEK and salt.
    /// Never holds the whole input in memory (bounded buffers). Returns byte counts.
    pub fn seal<R: Read, W: Write>(
        &self,
        mut input: R,
        mut output: W,
    ) -> Result<SealStats, SealError> {
        let spool = Spool::default();
        let mut buf = vec![0u8; CHUNK];
        let mut n = fill(&mut input, &mut buf).map_err(SealError::Input)?;
        // Most backed-up files fit in one chunk; telling zstd their size shrinks its tables.
        let known_size = (n < CHUNK).then_some(n as u64);
        let mut encoder = self.start_message(spool.clone(), known_size)?;
        let mut stats = SealStats::default();
        while n > 0 {
            stats.plaintext_bytes += n as u64;
            encoder.write_all(&buf[..n]).map_err(crypto)?;
            stats.sealed_bytes += spool.drain_into(&mut output)?;
            if n < CHUNK {
                break; // EOF already seen; reading on could break the pledged size.
            }
            n = fill(&mut input, &mut buf).map_err(SealError::Input)?;
        }
        encoder
            .finish()
            .map_err(crypto)?
            .finalize()
            .map_err(crypto)?;
        stats.sealed_bytes += spool.drain_into(&mut output)?;
        output.flush().map_err(SealError::Io)?;
        Ok(stats)
    }

    /// For gate 2: parse the sealed bytes, require SKESK v4 then SEIPD v1 as the first packets
    /// (anything else -> Err with a clear message saying what was found), decrypt just the head
    /// using the cached KEK (no per-file S2K) and require that the literal data begins with the
    /// zstd frame magic 28 B5 2F FD. Must stream: do not read the whole file.
    ///
    /// Reads only the head (plus ~128 KiB of parser read-ahead), so it cannot see truncation or
    /// corruption past it; `open(sealed, io::sink())` checks the whole file (MDC, zstd checksum).
    pub fn verify_sealed<R: Read + Send + Sync>(&self, sealed: R) -> Result<(), SealError> {
        let failure = ReadFailure::default();
        let input = FailureRecorder {
            inner: sealed,
            failure: failure.clone(),
        };
        self.check_head(input)
            .map_err(|why| failure.take_or(SealError::NotSealed(why)))
    }

    /// Full decrypt + decompress (used by tests and, later, restore). Streaming.
    ///
    /// Messages with our S2K use the cached KEK; others (e.g. sealed by an earlier process with
    /// another salt) cost one S2K.  Plaintext is released before the MDC at the end of the
    /// message is checked, so callers must discard the output when this returns `Err`.
    pub fn open<R: Read + Send + Sync, W: Write>(
        &self,
        sealed: R,
        mut output: W,
    ) -> Result<u64, SealError> {
        let failure = ReadFailure::default();
        let input = FailureRecorder {
            inner: sealed,
            failure: failure.clone(),
        };
        let refused = |why: String| failure.take_or(SealError::Crypto(why));
        let mut literal = self.decrypt_head(input, true).map_err(refused)?;
        let written = decompress(&mut literal, &mut output).map_err(|e| match e {
            Decompress::Read(e) => refused(format!("{e:#}")),
            Decompress::Write(e) => SealError::Io(e),
        })?;
        finish_message(literal).map_err(refused)?;
        output.flush().map_err(SealError::Io)?;
        Ok(written)
    }

    /// The key for an S2K other than ours: remembered, or derived once.
    fn foreign_key(&self, s2k: &S2K, algo: SymmetricAlgorithm) -> Result<SessionKey, String> {
        let lock = || self.foreign.lock().unwrap_or_else(PoisonError::into_inner);
        let known = lock()
            .iter()
            .find(|(s, a, _)| s == s2k && *a == algo)
            .map(|(_, _, key)| key.clone());
        if let Some(key) = known {
            return Ok(key);
        }
        let key = self.derive(s2k, algo)?;
        let mut foreign = lock();
        if foreign.len() >= FOREIGN_KEYS {
            foreign.remove(0);
        }
        foreign.push((s2k.clone(), algo, key.clone()));
        Ok(key)
    }

    fn derive(&self, s2k: &S2K, algo: SymmetricAlgorithm) -> Result<SessionKey, String> {
        self.s2k_derivations.fetch_add(1, Ordering::Relaxed);
        run_s2k(&self.passphrase, s2k, algo)
    }

    /// Builds the writer stack; the SKESK is written by hand because sequoia's own password
    /// path would run the S2K again for every file.
    fn start_message(&self, spool: Spool, size: Option<u64>) -> Result<Compressor, SealError> {
        let session_key = fresh_session_key()?;
        let skesk = self.wrap_session_key(&session_key)?;
        let mut message = Message::new(spool);
        Packet::from(skesk)
            .serialize(&mut message)
            .map_err(crypto)?;
        let message = Encryptor::with_session_key(message, PAYLOAD_ALGO, session_key)
            .and_then(|e| e.build())
            .and_then(|m| LiteralWriter::new(m).format(DataFormat::Binary).build())
            .map_err(crypto)?;
        let mut encoder = Compressor::new(message, self.zstd_level).map_err(crypto)?;
        encoder.include_checksum(true).map_err(crypto)?;
        encoder.set_pledged_src_size(size).map_err(crypto)?;
        Ok(encoder)
    }

    /// RFC 9580 5.3.3 (v4): ESK = CFB(KEK, zero IV, algo octet || session key).
    fn wrap_session_key(&self, session_key: &SessionKey) -> Result<SKESK4, SealError> {
        let mut plain = SessionKey::from(vec![0u8; 1 + session_key.len()]);
        plain[0] = PAYLOAD_ALGO.into();
        plain[1..].copy_from_slice(session_key);
        let mode = BlockCipherMode::CFB;
        let mut cfb = symmetric::Encryptor::new(
            PAYLOAD_ALGO,
            mode,
            PaddingMode::None,
            &self.kek,
            None,
            Vec::new(),
        )
        .map_err(crypto)?;
        cfb.write_all(&plain).map_err(crypto)?;
        let esk = cfb.finalize().map_err(crypto)?;
        SKESK4::new(PAYLOAD_ALGO, self.s2k.clone(), Some(esk.into_boxed_slice())).map_err(crypto)
    }

    /// Recovers the payload algorithm and session key.  `allow_derive` decides whether a
    /// foreign S2K may cost a fresh derivation or is refused (gate 2 must stay cheap).
    fn unwrap_session_key(
        &self,
        skesk: &SKESK4,
        allow_derive: bool,
    ) -> Result<(SymmetricAlgorithm, SessionKey), String> {
        let esk_algo = skesk.symmetric_algo();
        let kek = if skesk.s2k() == &self.s2k && esk_algo == PAYLOAD_ALGO {
            self.kek.clone()
        } else if allow_derive {
            self.foreign_key(skesk.s2k(), esk_algo)?
        } else {
            return Err(format!(
                "SKESK uses S2K {} with {esk_algo}, not this sealer's {} with {PAYLOAD_ALGO}",
                skesk.s2k(),
                self.s2k
            ));
        };
        match skesk.esk().map_err(|e| format!("{e:#}"))? {
            None => Ok((esk_algo, kek)),
            Some(esk) => decrypt_esk(esk_algo, &kek, esk),
        }
    }

    /// Parses SKESK v4 + SEIPD v1, decrypts, and stops at the start of the literal data body.
    fn decrypt_head<'a, R: Read + Send + Sync + 'a>(
        &self,
        input: R,
        allow_derive: bool,
    ) -> Result<PacketParser<'a>, String> {
        let ppr = PacketParserBuilder::from_reader(input)
            .and_then(|b| b.dearmor(Dearmor::Disabled).build())
            .map_err(|e| format!("first packet must be a SKESK v4, parsing failed: {e:#}"))?;
        let (skesk, ppr) = expect_skesk4(ppr)?;
        let mut seipd = expect_seipd1(ppr)?;
        let (algo, key) = self.unwrap_session_key(&skesk, allow_derive)?;
        decrypt_seipd1(&mut seipd, algo, &key)?;
        let (_, ppr) = seipd.recurse().map_err(|e| format!("{e:#}"))?;
        expect_literal(ppr)
    }

    fn check_head<R: Read + Send + Sync>(&self, input: R) -> Result<(), String> {
        let mut literal = self.decrypt_head(input, false)?;
        let mut magic = [0u8; 4];
        literal
            .read_exact(&mut magic)
            .map_err(|e| format!("literal data too short for the zstd magic: {e}"))?;
        if magic != ZSTD_MAGIC {
            return Err(format!(
                "literal data starts with {magic:02x?}, not the zstd magic {ZSTD_MAGIC:02x?}"
            ));
        }
        Ok(())
    }
}

type Compressor = zstd::stream::write::Encoder<'static, Message<'static>>;

/// Draws the key from the OS directly: sequoia's `SessionKey::new` reseeds a Yarrow generator
/// per call, which costs ~200 us, a large share of sealing a tiny file.
fn fresh_session_key() -> Result<SessionKey, SealError> {
    use rand::RngCore;
    let mut key = SessionKey::from(vec![0u8; PAYLOAD_ALGO.key_size().map_err(crypto)?]);
    rand::rngs::OsRng.try_fill_bytes(&mut key).map_err(crypto)?;
    Ok(key)
}

/// The only place that stretches the passphrase; `Sealer::s2k_derivations` counts its callers.
fn run_s2k(
    passphrase: &Password,
    s2k: &S2K,
    algo: SymmetricAlgorithm,
) -> Result<SessionKey, String> {
    let size = algo.key_size().map_err(|e| format!("{e:#}"))?;
    s2k.derive_key(passphrase, size)
        .map_err(|e| format!("{e:#}"))
}

/// Refuses S2Ks a tampered settings file could smuggle in to weaken every new file's key.
fn check_s2k(s2k: &S2K) -> Result<(), SealError> {
    match s2k {
        S2K::Iterated { hash_bytes, .. } if *hash_bytes >= S2K_MIN_HASH_BYTES => Ok(()),
        other => Err(SealError::InvalidArgument(format!(
            "refusing S2K {other}: need iterated+salted hashing of at least {S2K_MIN_HASH_BYTES} bytes"
        ))),
    }
}

fn check_passphrase(passphrase: &[u8]) -> Result<(), SealError> {
    if passphrase.is_empty() {
        return Err(SealError::InvalidArgument("empty passphrase".into()));
    }
    // gpg --passphrase-file stops at the first newline, so such a passphrase could never match.
    if passphrase.contains(&b'\n') {
        return Err(SealError::InvalidArgument(
            "passphrase contains a newline".into(),
        ));
    }
    Ok(())
}

fn check_zstd_level(level: i32) -> Result<(), SealError> {
    let range = zstd::compression_level_range();
    if !range.contains(&level) {
        return Err(SealError::InvalidArgument(format!(
            "zstd level {level} outside {}..={}",
            range.start(),
            range.end()
        )));
    }
    Ok(())
}

fn decrypt_esk(
    esk_algo: SymmetricAlgorithm,
    kek: &SessionKey,
    esk: &[u8],
) -> Result<(SymmetricAlgorithm, SessionKey), String> {
    let source = buffered_reader::Memory::with_cookie(esk, Default::default());
    let mode = BlockCipherMode::CFB;
    let mut plain = SessionKey::from(vec![0u8; esk.len()]);
    symmetric::Decryptor::new(esk_algo, mode, UnpaddingMode::None, kek, None, source)
        .map_err(|e| format!("{e:#}"))?
        .read_exact(&mut plain)
        .map_err(|e| format!("{e:#}"))?;
    let algo = SymmetricAlgorithm::from(plain[0]);
    // A wrong KEK yields a random algorithm octet; reject before sequoia sees a bogus key.
    match algo.key_size() {
        Ok(size) if size + 1 == plain.len() => Ok((algo, SessionKey::from(&plain[1..]))),
        _ => Err("session key does not decrypt (wrong passphrase?)".into()),
    }
}

/// Bytes a SEIPD v1 body needs beyond one cipher block: 2 check octets and a 22-octet MDC.
const SEIPD1_MIN_TAIL: usize = 2 + 22;

/// sequoia 2.4.2 `PacketParser::decrypt` panics (unwrap in parse.rs) when the body holds the
/// IV and check octets but not the MDC's worth of bytes after them, i.e. on truncated files.
/// Any real SEIPD v1 body is longer, so requiring that length first is a correct check too.
fn decrypt_seipd1(
    seipd: &mut PacketParser<'_>,
    algo: SymmetricAlgorithm,
    key: &SessionKey,
) -> Result<(), String> {
    let needed = algo.block_size().map_err(|e| format!("{e:#}"))? + SEIPD1_MIN_TAIL;
    seipd
        .data_hard(needed)
        .map_err(|e| format!("SEIPD v1 body shorter than {needed} bytes: {e}"))?;
    seipd
        .decrypt(algo, key)
        .map_err(|e| format!("SEIPD v1 does not decrypt with this sealer's key: {e:#}"))
}

fn describe(packet: &Packet) -> String {
    match packet.version() {
        Some(v) => format!("{} version {v}", packet.tag()),
        None => packet.tag().to_string(),
    }
}

fn next_packet<'a>(ppr: PacketParserResult<'a>, wanted: &str) -> Result<PacketParser<'a>, String> {
    match ppr {
        PacketParserResult::Some(pp) => Ok(pp),
        PacketParserResult::EOF(_) => Err(format!("input ended where a {wanted} was expected")),
    }
}

fn expect_skesk4(ppr: PacketParserResult<'_>) -> Result<(SKESK4, PacketParserResult<'_>), String> {
    let pp = next_packet(ppr, "SKESK v4 packet")?;
    let skesk = match &pp.packet {
        Packet::SKESK(SKESK::V4(skesk)) => skesk.clone(),
        other => {
            return Err(format!(
                "first packet must be a SKESK v4, found {}",
                describe(other)
            ));
        }
    };
    let (_, next) = pp.next().map_err(|e| format!("second packet: {e:#}"))?;
    Ok((skesk, next))
}

fn expect_seipd1(ppr: PacketParserResult<'_>) -> Result<PacketParser<'_>, String> {
    let pp = next_packet(ppr, "SEIPD v1 packet")?;
    match &pp.packet {
        Packet::SEIP(SEIP::V1(_)) => Ok(pp),
        other => Err(format!(
            "second packet must be a SEIPD v1, found {}",
            describe(other)
        )),
    }
}

fn expect_literal(ppr: PacketParserResult<'_>) -> Result<PacketParser<'_>, String> {
    let pp = next_packet(ppr, "literal data packet")?;
    match &pp.packet {
        Packet::Literal(_) if pp.recursion_depth() == 1 => Ok(pp),
        other => Err(format!(
            "encrypted payload must start with literal data, found {} at depth {}",
            describe(other),
            pp.recursion_depth()
        )),
    }
}

/// After the literal data only a valid MDC may follow, then the end of the input; this is
/// what catches truncation and tampering of the ciphertext.
fn finish_message(literal: PacketParser<'_>) -> Result<(), String> {
    let (_, ppr) = literal
        .next()
        .map_err(|e| format!("after literal data: {e:#}"))?;
    let mdc = next_packet(ppr, "MDC packet")?;
    // Packet::MDC is deprecated for building messages, but it is how the parser reports it.
    #[allow(deprecated)]
    let valid = matches!(&mdc.packet, Packet::MDC(m) if m.valid()) && mdc.recursion_depth() == 1;
    if !valid {
        return Err(format!(
            "expected a valid MDC, found {}",
            describe(&mdc.packet)
        ));
    }
    match mdc.next().map_err(|e| format!("after MDC: {e:#}"))?.1 {
        PacketParserResult::EOF(eof) => eof.is_message().map_err(|e| format!("{e:#}")),
        PacketParserResult::Some(pp) => Err(format!("trailing {}", describe(&pp.packet))),
    }
}

/// Which side of `decompress` failed: reading means bad data, writing means our output.
enum Decompress {
    Read(io::Error),
    Write(io::Error),
}

fn decompress<R: Read, W: Write>(literal: &mut R, output: &mut W) -> Result<u64, Decompress> {
    let mut decoder = zstd::stream::read::Decoder::new(literal).map_err(Decompress::Read)?;
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = read_retrying(&mut decoder, &mut buf).map_err(Decompress::Read)?;
        if n == 0 {
            return Ok(total);
        }
        output.write_all(&buf[..n]).map_err(Decompress::Write)?;
        total += n as u64;
    }
}

/// Reads until `buf` is full or the input ends, so a short count means end of input.
fn fill<R: Read>(source: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match read_retrying(source, &mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn read_retrying<R: Read>(source: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match source.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Collects the writer stack's output so that the caller's writer needs no `Send + Sync` and
/// every error writing it is reported as [`SealError::Io`] rather than buried in sequoia.
#[derive(Clone, Default)]
struct Spool(Arc<Mutex<Vec<u8>>>);

impl Spool {
    fn drain_into<W: Write>(&self, output: &mut W) -> Result<u64, SealError> {
        let mut pending = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        output.write_all(&pending).map_err(SealError::Io)?;
        let written = pending.len() as u64;
        pending.clear();
        Ok(written)
    }
}

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut pending = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        pending.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The first error of the caller's reader, kept outside sequoia's error chain so it surfaces
/// as [`SealError::Input`] instead of a crypto failure or gate-2 rejection.
#[derive(Clone, Default)]
struct ReadFailure(Arc<Mutex<Option<io::Error>>>);

impl ReadFailure {
    fn record(&self, e: io::Error) {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        slot.get_or_insert(e);
    }

    fn take_or(&self, fallback: SealError) -> SealError {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        slot.take().map_or(fallback, SealError::Input)
    }
}

struct FailureRecorder<R> {
    inner: R,
    failure: ReadFailure,
}

impl<R: Read> Read for FailureRecorder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::Interrupted {
                return e;
            }
            let kind = e.kind();
            self.failure.record(e);
            io::Error::new(kind, "reading sealed input failed")
        })
    }
}

#[cfg(test)]
mod tests;
