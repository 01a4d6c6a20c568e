use super::*;
use rand::RngCore;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

const PASS: &[u8] = b"correct horse battery staple";

fn shared() -> &'static Sealer {
    static SEALER: OnceLock<Sealer> = OnceLock::new();
    SEALER.get_or_init(|| Sealer::new(PASS, 3).expect("sealer"))
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

fn text_bytes(len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 100);
    let mut i = 0u64;
    while v.len() < len {
        v.extend_from_slice(format!("line {i}: the quick brown fox jumps over it\n").as_bytes());
        i += 1;
    }
    v.truncate(len);
    v
}

fn seal_vec(sealer: &Sealer, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let stats = sealer.seal(data, &mut out).expect("seal");
    assert_eq!(stats.plaintext_bytes, data.len() as u64);
    assert_eq!(stats.sealed_bytes, out.len() as u64);
    out
}

fn open_vec(sealer: &Sealer, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    let mut out = Vec::new();
    let n = sealer.open(sealed, &mut out)?;
    assert_eq!(n, out.len() as u64);
    Ok(out)
}

fn first_skesk(sealed: &[u8]) -> SKESK4 {
    let ppr = PacketParser::from_bytes(sealed).expect("parse");
    expect_skesk4(ppr).expect("skesk4").0
}

/// A private GNUPGHOME whose agent is shut down again when the test ends.
struct GpgHome {
    dir: tempfile::TempDir,
}

impl GpgHome {
    fn new() -> GpgHome {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let private = std::fs::Permissions::from_mode(0o700);
        std::fs::set_permissions(dir.path(), private).expect("chmod 700 GNUPGHOME");
        GpgHome { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A second line proves that only the first line is the passphrase, as in gpg.
    fn passfile(&self, pass: &[u8]) -> PathBuf {
        let path = self.path("passphrase");
        let mut content = pass.to_vec();
        content.extend_from_slice(b"\nnot part of the passphrase\n");
        std::fs::write(&path, content).expect("write passfile");
        path
    }

    fn gpg(&self, pass: &[u8]) -> Command {
        let mut cmd = Command::new("gpg");
        cmd.arg("--homedir").arg(self.dir.path());
        cmd.args([
            "--batch",
            "--no-tty",
            "--quiet",
            "--pinentry-mode",
            "loopback",
        ]);
        cmd.arg("--no-symkey-cache")
            .arg("--passphrase-file")
            .arg(self.passfile(pass));
        cmd
    }

    /// `gpg -d file | zstd -d`, exactly as a restore without this program would do it.
    fn decrypt_unzstd(&self, pass: &[u8], sealed: &Path) -> Vec<u8> {
        let mut gpg = self.gpg(pass);
        gpg.arg("-d")
            .arg(sealed)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut gpg = gpg.spawn().expect("spawn gpg");
        let pipe = gpg.stdout.take().expect("gpg stdout is piped");
        let zstd = Command::new("zstd")
            .args(["-d", "-c", "-q"])
            .stdin(Stdio::from(pipe))
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn zstd");
        let plain = zstd.wait_with_output().expect("zstd output");
        let gpg = gpg.wait_with_output().expect("gpg status");
        let gpg_err = String::from_utf8_lossy(&gpg.stderr);
        assert!(gpg.status.success(), "gpg failed: {gpg_err}");
        assert!(plain.status.success(), "zstd -d failed");
        plain.stdout
    }

    fn symmetric(&self, plain: &[u8], extra: &[&str]) -> Vec<u8> {
        let (input, output) = (self.path("plain.in"), self.path("sym.gpg"));
        std::fs::write(&input, plain).expect("write plain");
        let _ = std::fs::remove_file(&output);
        let status = self
            .gpg(PASS)
            .args(["--symmetric", "--cipher-algo", "AES256"])
            .args(extra)
            .arg("-o")
            .arg(&output)
            .arg(&input)
            .status()
            .expect("run gpg --symmetric");
        assert!(status.success());
        std::fs::read(&output).expect("read gpg output")
    }
}

impl Drop for GpgHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.dir.path())
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

fn gpg_round_trip(sealer: &Sealer, pass: &[u8], data: &[u8]) {
    let home = GpgHome::new();
    let path = home.path("file.zst.gpg");
    std::fs::write(&path, seal_vec(sealer, data)).expect("write sealed");
    assert!(
        home.decrypt_unzstd(pass, &path) == data,
        "gpg | zstd changed the bytes"
    );
}

#[test]
fn sealer_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Sealer>();
}

#[test]
fn round_trip_via_open() {
    let s = shared();
    let inputs = [
        Vec::new(),
        vec![0x42],
        random_bytes(1 << 20),
        text_bytes(10 << 20),
    ];
    for data in inputs {
        let sealed = seal_vec(s, &data);
        assert!(
            open_vec(s, &sealed).expect("open") == data,
            "len {}",
            data.len()
        );
    }
}

/// Hands out at most 1000 bytes per read, like a slow pipe.
struct Trickle<'a>(&'a [u8]);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(1000);
        self.0.read(&mut buf[..n])
    }
}

#[test]
fn chunk_boundaries_and_short_reads_round_trip() {
    let s = shared();
    for len in [CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 7] {
        let data = random_bytes(len);
        let mut sealed = Vec::new();
        let stats = s.seal(Trickle(&data), &mut sealed).expect("seal");
        assert_eq!(stats.plaintext_bytes, len as u64);
        assert!(open_vec(s, &sealed).expect("open") == data, "len {len}");
    }
    gpg_round_trip(s, PASS, &random_bytes(CHUNK - 1));
}

#[test]
fn text_actually_compresses() {
    let data = text_bytes(10 << 20);
    assert!(seal_vec(shared(), &data).len() < data.len() / 4);
}

#[test]
fn gpg_and_zstd_cli_restore_exact_bytes() {
    let s = shared();
    gpg_round_trip(s, PASS, b"");
    gpg_round_trip(s, PASS, b"hello, backup\n");
    let mut big = text_bytes(12 << 20);
    big.extend_from_slice(&random_bytes(8 << 20));
    gpg_round_trip(s, PASS, &big);
}

#[test]
fn gpg_rejects_wrong_passphrase() {
    let home = GpgHome::new();
    let path = home.path("file.zst.gpg");
    std::fs::write(&path, seal_vec(shared(), b"secret")).expect("write sealed");
    let out = home
        .gpg(b"wrong")
        .arg("-d")
        .arg(&path)
        .output()
        .expect("run gpg");
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
}

#[test]
fn emits_skesk4_and_seipd1_with_cached_s2k() {
    let s = shared();
    let sealed = seal_vec(s, b"x");
    let ppr = PacketParser::from_bytes(&sealed).expect("parse");
    let (skesk, ppr) = expect_skesk4(ppr).expect("skesk4");
    assert_eq!(skesk.s2k(), s.s2k());
    assert_eq!(skesk.symmetric_algo(), SymmetricAlgorithm::AES256);
    assert!(
        matches!(s.s2k(), S2K::Iterated { hash: HashAlgorithm::SHA256, hash_bytes, .. }
        if *hash_bytes >= 0x0100_0000)
    );
    expect_seipd1(ppr).expect("seipd1");
}

#[test]
fn verify_accepts_sealed_output() {
    let s = shared();
    for data in [Vec::new(), vec![7], random_bytes(1 << 20)] {
        s.verify_sealed(&seal_vec(s, &data)[..])
            .expect("sealed output must pass gate 2");
    }
}

fn assert_not_sealed(result: Result<(), SealError>, needle: &str) {
    match result {
        Err(SealError::NotSealed(msg)) => {
            assert!(msg.contains(needle), "{msg:?} lacks {needle:?}")
        }
        other => panic!("expected NotSealed({needle}), got {other:?}"),
    }
}

#[test]
fn verify_rejects_plain_zstd() {
    let zst = zstd::encode_all(&text_bytes(4096)[..], 3).expect("zstd");
    assert_not_sealed(shared().verify_sealed(&zst[..]), "first packet");
}

#[test]
fn verify_rejects_random_bytes() {
    for len in [1, 16, 100, 4096, 70_000] {
        for _ in 0..20 {
            let junk = random_bytes(len);
            let result = shared().verify_sealed(&junk[..]);
            assert!(matches!(result, Err(SealError::NotSealed(_))), "{result:?}");
        }
    }
}

#[test]
fn verify_rejects_gpg_uncompressed_literal() {
    let home = GpgHome::new();
    let gpg_msg = home.symmetric(&text_bytes(5000), &["--compress-algo", "none"]);
    // Our own sealer: the S2K salt differs, and gate 2 refuses a per-file S2K.
    assert_not_sealed(shared().verify_sealed(&gpg_msg[..]), "not this sealer's");
    // A sealer sharing gpg's S2K decrypts the head and finds no zstd magic.
    let same_s2k = Sealer::with_s2k(PASS, first_skesk(&gpg_msg).s2k().clone(), 3).expect("s");
    assert_not_sealed(same_s2k.verify_sealed(&gpg_msg[..]), "not the zstd magic");
}

#[test]
fn verify_rejects_gpg_compressed_packet() {
    let home = GpgHome::new();
    let gpg_msg = home.symmetric(&text_bytes(5000), &["--compress-algo", "zlib"]);
    let same_s2k = Sealer::with_s2k(PASS, first_skesk(&gpg_msg).s2k().clone(), 3).expect("s");
    assert_not_sealed(
        same_s2k.verify_sealed(&gpg_msg[..]),
        "must start with literal data",
    );
}

#[test]
fn gpg_message_of_zstd_bytes_passes_and_opens() {
    // Cross-checks our parsing of a SKESK without ESK (gpg's layout) end to end.
    let home = GpgHome::new();
    let data = text_bytes(50_000);
    let zst = zstd::encode_all(&data[..], 3).expect("zstd");
    let gpg_msg = home.symmetric(&zst, &["--compress-algo", "none"]);
    let same_s2k = Sealer::with_s2k(PASS, first_skesk(&gpg_msg).s2k().clone(), 3).expect("s");
    same_s2k
        .verify_sealed(&gpg_msg[..])
        .expect("gpg-wrapped zstd passes gate 2");
    assert!(open_vec(&same_s2k, &gpg_msg).expect("open") == data);
}

#[test]
fn verify_rejects_truncated_head() {
    let s = shared();
    let sealed = seal_vec(s, &random_bytes(1 << 20));
    // SKESK (48) + SEIPD header, version, IV and check (21) + literal header (>= 8) + magic.
    for len in 0..=76 {
        let result = s.verify_sealed(&sealed[..len]);
        assert!(
            matches!(result, Err(SealError::NotSealed(_))),
            "len {len}: {result:?}"
        );
    }
    let tiny = seal_vec(s, b"");
    for len in 0..tiny.len() - 30 {
        let result = s.verify_sealed(&tiny[..len]);
        assert!(
            matches!(result, Err(SealError::NotSealed(_))),
            "len {len}: {result:?}"
        );
    }
}

#[test]
fn open_rejects_every_short_prefix_without_panicking() {
    let s = shared();
    let sealed = seal_vec(s, &random_bytes(100_000));
    for len in 0..=300 {
        let result = open_vec(s, &sealed[..len]);
        assert!(
            matches!(result, Err(SealError::Crypto(_))),
            "len {len}: {result:?}"
        );
    }
}

#[test]
fn verify_rejects_other_passphrase_with_same_s2k() {
    let other = Sealer::with_s2k(b"other passphrase", shared().s2k().clone(), 3).expect("s");
    let sealed = seal_vec(&other, b"data");
    assert_not_sealed(shared().verify_sealed(&sealed[..]), "");
}

/// Counts how much of the sealed stream gate 2 pulls in.
struct CountingReader<'a> {
    data: &'a [u8],
    consumed: Arc<AtomicU64>,
}

impl Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.data.read(buf)?;
        self.consumed.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[test]
fn verify_reads_only_the_head() {
    let s = shared();
    let sealed = seal_vec(s, &random_bytes(20 << 20));
    let consumed = Arc::new(AtomicU64::new(0));
    let reader = CountingReader {
        data: &sealed,
        consumed: consumed.clone(),
    };
    s.verify_sealed(reader).expect("verify");
    let read = consumed.load(Ordering::Relaxed);
    println!("gate 2 read {read} of {} sealed bytes", sealed.len());
    assert!(
        read < 1 << 20,
        "gate 2 read {read} of {} bytes",
        sealed.len()
    );
}

#[test]
fn open_rejects_truncation_and_corruption() {
    let s = shared();
    for data in [b"short".to_vec(), random_bytes(3 << 20)] {
        let sealed = seal_vec(s, &data);
        for cut in [1, 10, 22, sealed.len() / 2] {
            let result = open_vec(s, &sealed[..sealed.len() - cut]);
            assert!(
                matches!(result, Err(SealError::Crypto(_))),
                "cut {cut}: {result:?}"
            );
        }
        let mut flipped = sealed.clone();
        let mid = flipped.len() / 2 + 40;
        flipped[mid] ^= 0x01;
        assert!(matches!(open_vec(s, &flipped), Err(SealError::Crypto(_))));
    }
}

#[test]
fn open_rejects_unencrypted_input() {
    let zst = zstd::encode_all(&b"abc"[..], 3).expect("zstd");
    assert!(matches!(
        open_vec(shared(), &zst),
        Err(SealError::Crypto(_))
    ));
}

#[test]
fn open_with_wrong_passphrase_fails() {
    let other = Sealer::with_s2k(b"other passphrase", shared().s2k().clone(), 3).expect("s");
    let sealed = seal_vec(shared(), b"data");
    assert!(matches!(
        open_vec(&other, &sealed),
        Err(SealError::Crypto(_))
    ));
}

#[test]
fn each_seal_uses_a_fresh_session_key() {
    let s = shared();
    let (a, b) = (seal_vec(s, b"same input"), seal_vec(s, b"same input"));
    assert_ne!(a, b);
    let key_a = s
        .unwrap_session_key(&first_skesk(&a), false)
        .expect("key a")
        .1;
    let key_b = s
        .unwrap_session_key(&first_skesk(&b), false)
        .expect("key b")
        .1;
    assert_ne!(&key_a[..], &key_b[..]);
    assert_eq!(key_a.len(), 32);
}

#[test]
fn s2k_runs_once_per_sealer() {
    let s = Sealer::new(PASS, 3).expect("sealer");
    assert_eq!(s.s2k_derivations(), 1);
    for i in 0..50u32 {
        let data = i.to_le_bytes();
        let sealed = seal_vec(&s, &data);
        s.verify_sealed(&sealed[..]).expect("verify");
        assert!(open_vec(&s, &sealed).expect("open") == data);
    }
    assert_eq!(s.s2k_derivations(), 1);
}

#[test]
fn seal_uses_cached_kek_not_passphrase() {
    // If sealing re-derived from the passphrase, gpg would need the replacement passphrase.
    let mut s = Sealer::new(PASS, 3).expect("sealer");
    s.passphrase = Password::from("replacement passphrase");
    gpg_round_trip(&s, PASS, b"cached key proof");
}

#[test]
fn open_accepts_other_salt_at_one_s2k() {
    let earlier = Sealer::new(PASS, 3).expect("sealer");
    let sealed = seal_vec(&earlier, b"from an earlier run");
    let s = Sealer::new(PASS, 3).expect("sealer");
    assert_not_sealed(s.verify_sealed(&sealed[..]), "not this sealer's");
    assert_eq!(open_vec(&s, &sealed).expect("open"), b"from an earlier run");
    assert_eq!(s.s2k_derivations(), 2);
    // Another file from that run costs no further S2K.
    let second = seal_vec(&earlier, b"second file of that run");
    assert_eq!(
        open_vec(&s, &second).expect("open"),
        b"second file of that run"
    );
    assert_eq!(s.s2k_derivations(), 2);
    let resumed = Sealer::with_s2k(PASS, earlier.s2k().clone(), 3).expect("sealer");
    resumed
        .verify_sealed(&sealed[..])
        .expect("same S2K verifies from the cache");
}

struct FailingWriter {
    budget: usize,
}

impl Write for FailingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.budget == 0 {
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        let n = buf.len().min(self.budget);
        self.budget -= n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct FailingReader {
    budget: usize,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.budget == 0 {
            return Err(io::Error::from_raw_os_error(5)); // EIO
        }
        let n = buf.len().min(self.budget);
        buf[..n].fill(b'a');
        self.budget -= n;
        Ok(n)
    }
}

#[test]
fn output_enospc_is_reported_as_io() {
    let data = random_bytes(1 << 20);
    for budget in [0, 100, 500_000] {
        match shared().seal(&data[..], FailingWriter { budget }) {
            Err(SealError::Io(e)) => assert_eq!(e.raw_os_error(), Some(28)),
            other => panic!("expected Io(ENOSPC), got {other:?}"),
        }
    }
    let sealed = seal_vec(shared(), &data);
    match shared().open(&sealed[..], FailingWriter { budget: 1000 }) {
        Err(SealError::Io(e)) => assert_eq!(e.raw_os_error(), Some(28)),
        other => panic!("expected Io(ENOSPC), got {other:?}"),
    }
}

#[test]
fn input_errors_are_reported_as_input() {
    match shared().seal(FailingReader { budget: 300_000 }, io::sink()) {
        Err(SealError::Input(e)) => assert_eq!(e.raw_os_error(), Some(5)),
        other => panic!("expected Input(EIO), got {other:?}"),
    }
    let sealed = seal_vec(shared(), &random_bytes(3 << 20));
    let reader = (&sealed[..2 << 20]).chain(FailingReader { budget: 0 });
    match shared().open(reader, io::sink()) {
        Err(SealError::Input(e)) => assert_eq!(e.raw_os_error(), Some(5)),
        other => panic!("expected Input(EIO), got {other:?}"),
    }
    match shared().verify_sealed(FailingReader { budget: 0 }) {
        Err(SealError::Input(e)) => assert_eq!(e.raw_os_error(), Some(5)),
        other => panic!("expected Input(EIO), got {other:?}"),
    }
}

#[test]
fn rejects_bad_parameters() {
    let weak_s2k = S2K::new_iterated(HashAlgorithm::SHA256, 1024).expect("s2k");
    let bad = [
        Sealer::new(b"", 3),
        Sealer::new(b"two\nlines", 3),
        Sealer::new(PASS, 1000),
        Sealer::with_s2k(PASS, weak_s2k, 3),
    ];
    for result in bad {
        assert!(
            matches!(result, Err(SealError::InvalidArgument(_))),
            "{result:?}"
        );
    }
}

#[test]
fn sealers_are_shared_across_threads() {
    let s = Arc::new(Sealer::new(PASS, 3).expect("sealer"));
    let workers: Vec<_> = (0..4u8)
        .map(|t| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                for i in 0..25u8 {
                    let data = vec![t ^ i; usize::from(i) * 97];
                    let sealed = seal_vec(&s, &data);
                    assert!(open_vec(&s, &sealed).expect("open") == data);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker panicked");
    }
    assert_eq!(s.s2k_derivations(), 1);
}

/// Run with `cargo test --release -- --ignored --nocapture seal_timing`.
#[test]
#[ignore]
fn seal_timing() {
    let s = shared();
    let started = Instant::now();
    let files = 1000u32;
    for i in 0..files {
        let _ = seal_vec(s, format!("tiny file {i}\n").as_bytes());
    }
    let per_file = started.elapsed() / files;
    let started = Instant::now();
    let rounds = 10u32;
    for _ in 0..rounds {
        S2K::default()
            .derive_key(&Password::from(PASS), 32)
            .expect("derive");
    }
    let per_s2k = started.elapsed() / rounds;
    println!("seal per tiny file: {per_file:?}; default S2K per derivation: {per_s2k:?}");
}
