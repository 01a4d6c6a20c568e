//! The scan's first look at a window: the bytes a detector may be anchored on, and where a
//! keyword may start, as bits, one `u64` per block of 64 bytes. Where the CPU has AVX-512BW
//! (64 bytes per instruction) or AVX2 (32), both come from one pass straight over the bytes
//! read; otherwise a portable pass marks the anchors and the keywords are left to the
//! caller. The level is chosen at run time.
//!
//! A keyword may start at a byte when its first and last bytes are where it puts them, each
//! compared with ASCII case folded when it is a letter. That lets through few positions
//! that are not the keyword, and the caller compares those in full; it never turns away
//! one that is.

/// Bytes per block: one bit each in a mask.
pub(super) const BLOCK: usize = 64;

/// Keywords beyond this many are left to the caller's search.
const MAX_PROBES: usize = 8;

/// What one block holds, as bits from its first byte (bit 0) on.
#[derive(Clone, Copy, Default)]
pub(super) struct Marks {
    /// Bytes where a detector may be anchored: see [`anchor_at`].
    pub anchors: u64,
    /// Bytes where a keyword may start (all of them in a block only the portable pass
    /// read, none if keywords are left to the caller).
    pub starts: u64,
}

/// A keyword's first and last bytes and its length less one, lowercase.
#[derive(Clone, Copy)]
struct Probe {
    first: u8,
    last: u8,
    span: usize,
}

/// The instructions a [`Marker`] runs on.
/// Ordered from the fewest instructions to the most.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Level {
    Portable,
    Avx2,
    /// AVX-512BW: twice the bytes per instruction, and comparisons that give bits.
    Avx512,
}

impl Level {
    /// The best this CPU has.
    pub(super) fn best() -> Self {
        if avx512() {
            Level::Avx512
        } else if avx2() {
            Level::Avx2
        } else {
            Level::Portable
        }
    }

    /// Every level this CPU can run, best last.
    #[cfg(test)]
    pub(super) fn available() -> Vec<Self> {
        [Level::Portable, Level::Avx2, Level::Avx512]
            .into_iter()
            .filter(|&l| l <= Level::best())
            .collect()
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Level::Portable => "portable",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512bw",
        }
    }
}

/// Marks windows for one classifier's keywords.
pub(super) struct Marker {
    /// Keyword probes when the vector pass finds their starts.
    probes: Option<Vec<Probe>>,
    level: Level,
    /// Bytes that must follow a block's start for the vector pass to read it.
    reach: usize,
}

impl Marker {
    /// A marker for these keywords (lowercase, not empty) running on `level`, which the
    /// CPU must have.
    pub(super) fn at(words: &[Vec<u8>], level: Level) -> Self {
        assert!(level <= Level::best(), "this CPU lacks {}", level.name());
        let probes = (level != Level::Portable && words.len() <= MAX_PROBES).then(|| {
            words
                .iter()
                .map(|word| Probe {
                    first: word[0],
                    last: word[word.len() - 1],
                    span: word.len() - 1,
                })
                .collect()
        });
        let longest = words.iter().map(Vec::len).max().unwrap_or(0);
        Self {
            probes,
            level,
            // The anchors look two bytes past a block; a probe up to a word's last byte.
            reach: BLOCK + longest.max(2),
        }
    }

    /// Whether [`Marker::mark`] finds where keywords may start. If not, the caller
    /// searches for them itself.
    pub(super) fn finds_keywords(&self) -> bool {
        self.probes.is_some()
    }

    /// Appends to `out` the marks of each block from `text[from]` on, up to `limit` (the
    /// last block's marks stop there).
    pub(super) fn mark(&self, text: &[u8], from: usize, limit: usize, out: &mut Vec<Marks>) {
        let every = if self.finds_keywords() { u64::MAX } else { 0 };
        let mut base = from;
        while base < limit {
            // The vector pass needs the byte before a block and `reach` bytes from its
            // start: every block but the file's first and the window's last few.
            let fitting = match text.len().checked_sub(self.reach) {
                Some(last) if self.level != Level::Portable && base >= 1 && base <= last => {
                    ((last - base) / BLOCK + 1).min((limit - base).div_ceil(BLOCK))
                }
                _ => 0,
            };
            if fitting > 0 {
                let probes = self.probes.as_deref().unwrap_or_default();
                imp::mark(
                    text,
                    base,
                    fitting,
                    probes,
                    self.level == Level::Avx512,
                    out,
                );
                base += fitting * BLOCK;
            } else {
                out.push(Marks {
                    anchors: anchors(text, base),
                    starts: every,
                });
                base += BLOCK;
            }
        }
        if !(limit - from).is_multiple_of(BLOCK) {
            let last = out.last_mut().expect("a block was marked");
            let keep = (1 << ((limit - from) % BLOCK)) - 1;
            last.anchors &= keep;
            last.starts &= keep;
        }
    }
}

/// Whether a detector can be anchored at `b[1]`, `b[0]` being the byte before it: an `@`,
/// a `+` before a digit, or the first digit of a run of three or more, of two before `/` or
/// `.` (a date), of two after an uppercase letter (an IBAN's check digits), or of a
/// leading-zero group of two before a space (a national phone number). The vector pass
/// computes the same, 32 or 64 bytes at a time.
#[inline(always)]
fn anchor_at(b: [u8; 4]) -> bool {
    let digit = |x: u8| x.wrapping_sub(b'0') < 10;
    let [prev, b0, b1, b2] = b;
    let long = digit(b2)
        | (b2 == b'/')
        | (b2 == b'.')
        | (prev.wrapping_sub(b'A') < 26)
        | ((b0 == b'0') & (b2 == b' '));
    let number = digit(b0) & !digit(prev) & digit(b1) & long;
    number | ((b0 == b'+') & digit(b1)) | (b0 == b'@')
}

/// The anchors in `text[base..base + 64]`, as bits, without vector instructions.
fn anchors(text: &[u8], base: usize) -> u64 {
    if base == 0 || base + BLOCK + 2 > text.len() {
        let at = |i: usize| text.get(i).copied().unwrap_or(0);
        return (0..BLOCK)
            .filter(|&k| {
                let i = base + k;
                let prev = i.checked_sub(1).map_or(0, at);
                i < text.len() && anchor_at([prev, at(i), at(i + 1), at(i + 2)])
            })
            .fold(0, |mask, k| mask | 1 << k);
    }
    let bytes: &[u8; BLOCK + 3] = text[base - 1..base + BLOCK + 2]
        .try_into()
        .expect("67 bytes");
    let mut flags = [0u8; BLOCK];
    for (k, flag) in flags.iter_mut().enumerate() {
        *flag = u8::from(anchor_at([
            bytes[k],
            bytes[k + 1],
            bytes[k + 2],
            bytes[k + 3],
        ]));
    }
    // Each byte of `word` is 0 or 1; the multiplication gathers them into its top byte.
    flags
        .chunks_exact(8)
        .enumerate()
        .fold(0, |mask, (k, word)| {
            let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
            mask | (word.wrapping_mul(0x0102_0408_1020_4080) >> 56) << (8 * k)
        })
}

/// The word ends in the 32 bytes before `text[end]` where a label may end: bit `k` is set
/// when the two bytes before `text[end - 32 + k]` are one of `pairs` (lowercase; a letter
/// matches in either case) and `text[end - 32 + k]` does not continue the word (is not an
/// ASCII letter, digit or `_`). None where the vector instructions are missing or the
/// bytes before are too few; the caller then looks byte by byte.
#[inline]
pub(super) fn label_ends(text: &[u8], end: usize, pairs: &[[u8; 2]]) -> Option<u32> {
    let bytes: &[u8; 34] = text.get(end.checked_sub(34)?..end)?.try_into().ok()?;
    imp::label_ends(bytes, pairs)
}

#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512bw")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx2() -> bool {
    false
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512() -> bool {
    false
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::*;

    use super::{Marks, Probe, BLOCK, MAX_PROBES};

    /// Marks `blocks` blocks from `text[base]` on.
    pub(super) fn mark(
        text: &[u8],
        base: usize,
        blocks: usize,
        probes: &[Probe],
        avx512: bool,
        out: &mut Vec<Marks>,
    ) {
        let reach = probes.iter().map(|p| p.span).max().unwrap_or(0).max(2);
        assert!(base >= 1 && base + (blocks - 1) * BLOCK + BLOCK + reach <= text.len());
        assert!(probes.len() <= MAX_PROBES);
        out.reserve(blocks);
        // SAFETY: a `Marker` runs the vector pass only where AVX2 was detected, and the
        // asserts above keep every load inside `text[base - 1..]`: the furthest reads 32
        // bytes from the last block's second half plus the longest span (or 2).
        unsafe {
            let start = text.as_ptr().add(base);
            if avx512 {
                mark_avx512(start, blocks, probes, out)
            } else {
                mark_avx2(start, blocks, probes, out)
            }
        }
    }

    /// See [`super::label_ends`]: SSE2, which every x86-64 CPU has.
    #[inline(always)]
    pub(super) fn label_ends(bytes: &[u8; 34], pairs: &[[u8; 2]]) -> Option<u32> {
        // SAFETY: SSE2 is part of x86-64; the loads read 16 bytes from offsets up to 18.
        unsafe {
            let load = |at: usize| _mm_loadu_si128(bytes.as_ptr().add(at).cast());
            let splat = |b: u8| _mm_set1_epi8(b as i8);
            // Unsigned `lo <= x <= lo + span`, bytewise: min(x - lo, span) == x - lo.
            let within = |x: __m128i, lo: u8, span: u8| {
                let t = _mm_sub_epi8(x, splat(lo));
                _mm_cmpeq_epi8(_mm_min_epu8(t, splat(span)), t)
            };
            // `| 0x20` lowercases a letter and keeps `.` as it is.
            let fold = |x: __m128i| _mm_or_si128(x, splat(0x20));
            let half = |at: usize| {
                let (before, last, next) = (fold(load(at)), fold(load(at + 1)), load(at + 2));
                let mut ends_in = _mm_setzero_si128();
                for &[a, b] in pairs {
                    let pair = _mm_and_si128(
                        _mm_cmpeq_epi8(before, splat(a)),
                        _mm_cmpeq_epi8(last, splat(b)),
                    );
                    ends_in = _mm_or_si128(ends_in, pair);
                }
                let word = _mm_or_si128(
                    _mm_or_si128(within(next, b'0', 9), _mm_cmpeq_epi8(next, splat(b'_'))),
                    within(fold(next), b'a', 25),
                );
                _mm_movemask_epi8(_mm_andnot_si128(word, ends_in)) as u32
            };
            let (low, high) = std::hint::black_box((half(0), half(16)));
            Some(low | high << 16)
        }
    }

    /// As [`mark_avx2`], 64 bytes at a time, the comparisons giving bits directly.
    #[target_feature(enable = "avx512bw")]
    unsafe fn mark_avx512(start: *const u8, blocks: usize, probes: &[Probe], out: &mut Vec<Marks>) {
        let splat = |b: u8| _mm512_set1_epi8(b as i8);
        let fold = |b: u8| if b.is_ascii_lowercase() { 0x20 } else { 0 };
        let zero = _mm512_setzero_si512();
        let mut keys = [(zero, zero, zero, zero, 0); MAX_PROBES];
        for (key, p) in keys.iter_mut().zip(probes) {
            *key = (
                splat(p.first),
                splat(fold(p.first)),
                splat(p.last),
                splat(fold(p.last)),
                p.span,
            );
        }
        let keys = &keys[..probes.len()];
        // Unsigned `lo <= x < lo + count`, bytewise.
        let within = |x: __m512i, lo: u8, count: u8| {
            _mm512_cmplt_epu8_mask(_mm512_sub_epi8(x, splat(lo)), splat(count))
        };
        let eq = |x: __m512i, b: u8| _mm512_cmpeq_epi8_mask(x, splat(b));
        for k in 0..blocks {
            // SAFETY (all loads): see `mark`.
            let p = unsafe { start.add(k * BLOCK) };
            let load = |o: usize| unsafe { _mm512_loadu_si512(p.add(o).cast()) };
            let prev = unsafe { _mm512_loadu_si512(p.sub(1).cast()) };
            let (b0, b1, b2) = (load(0), load(1), load(2));
            let digit = |x: __m512i| within(x, b'0', 10);
            let (d1, d2) = (digit(b1), digit(b2));
            let long = d2
                | eq(b2, b'/')
                | eq(b2, b'.')
                | within(prev, b'A', 26)
                | (eq(b0, b'0') & eq(b2, b' '));
            let number = !digit(prev) & digit(b0) & d1 & long;
            let anchors = number | (eq(b0, b'+') & d1) | eq(b0, b'@');
            let mut starts = 0;
            for &(first, first_fold, last, last_fold, span) in keys {
                let head = _mm512_cmpeq_epi8_mask(_mm512_or_si512(b0, first_fold), first);
                // The last byte compared only where the first matched.
                let tail = _mm512_or_si512(load(span), last_fold);
                starts |= _mm512_mask_cmpeq_epi8_mask(head, tail, last);
            }
            out.push(Marks { anchors, starts });
        }
    }

    /// A keyword's probe as vectors: its first byte and the bit folding its case, its last
    /// byte and the bit folding that, and how far after the first the last is.
    type Key = (__m256i, __m256i, __m256i, __m256i, usize);

    #[target_feature(enable = "avx2")]
    unsafe fn mark_avx2(start: *const u8, blocks: usize, probes: &[Probe], out: &mut Vec<Marks>) {
        // Folding ASCII case: `| 0x20` lowercases a letter; other bytes are compared as
        // they are.
        let fold = |b: u8| if b.is_ascii_lowercase() { 0x20 } else { 0 };
        let mut keys = [(
            _mm256_setzero_si256(),
            _mm256_setzero_si256(),
            _mm256_setzero_si256(),
            _mm256_setzero_si256(),
            0,
        ); MAX_PROBES];
        for (key, p) in keys.iter_mut().zip(probes) {
            *key = (
                _mm256_set1_epi8(p.first as i8),
                _mm256_set1_epi8(fold(p.first) as i8),
                _mm256_set1_epi8(p.last as i8),
                _mm256_set1_epi8(fold(p.last) as i8),
                p.span,
            );
        }
        let keys = &keys[..probes.len()];
        for k in 0..blocks {
            // SAFETY (all loads): see `mark`.
            unsafe {
                let p = start.add(k * BLOCK);
                // Opaque to the optimiser: seeing the two masks as vectors of bits to be
                // joined, it would take them apart bit by bit.
                let (a0, s0) = std::hint::black_box(half(p, keys));
                let (a1, s1) = std::hint::black_box(half(p.add(32), keys));
                out.push(Marks {
                    anchors: u64::from(a0) | u64::from(a1) << 32,
                    starts: u64::from(s0) | u64::from(s1) << 32,
                });
            }
        }
    }

    /// Bytewise `x == b`.
    macro_rules! eq {
        ($x:expr, $b:expr) => {
            _mm256_cmpeq_epi8($x, _mm256_set1_epi8($b as i8))
        };
    }

    /// Bytewise unsigned `lo <= x <= lo + span`: min(x - lo, span) == x - lo.
    macro_rules! within {
        ($x:expr, $lo:expr, $span:expr) => {{
            let t = _mm256_sub_epi8($x, _mm256_set1_epi8($lo as i8));
            _mm256_cmpeq_epi8(_mm256_min_epu8(t, _mm256_set1_epi8($span as i8)), t)
        }};
    }

    /// The anchors and keyword starts of the 32 bytes at `p`, as bits.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn half(p: *const u8, keys: &[Key]) -> (u32, u32) {
        let (or, and) = (_mm256_or_si256, _mm256_and_si256);
        // SAFETY: `mark` checked that `p - 1` to `p + 32 + reach` are in the text.
        let load = |k: usize| unsafe { _mm256_loadu_si256(p.add(k).cast::<__m256i>()) };
        let prev = unsafe { _mm256_loadu_si256(p.sub(1).cast::<__m256i>()) };
        let (b0, b1, b2) = (load(0), load(1), load(2));
        let (d_prev, d0, d1, d2) = (
            within!(prev, b'0', 9),
            within!(b0, b'0', 9),
            within!(b1, b'0', 9),
            within!(b2, b'0', 9),
        );
        let long = or(
            or(
                or(d2, eq!(b2, b'/')),
                or(eq!(b2, b'.'), within!(prev, b'A', 25)),
            ),
            and(eq!(b0, b'0'), eq!(b2, b' ')),
        );
        // `andnot(a, b)` is `!a & b`.
        let number = _mm256_andnot_si256(d_prev, and(and(d0, d1), long));
        let anchors = or(or(number, and(eq!(b0, b'+'), d1)), eq!(b0, b'@'));
        let mut starts = 0;
        for &(first, first_fold, last, last_fold, span) in keys {
            let head = _mm256_cmpeq_epi8(or(b0, first_fold), first);
            let tail = _mm256_cmpeq_epi8(or(load(span), last_fold), last);
            starts |= _mm256_movemask_epi8(and(head, tail)) as u32;
        }
        (_mm256_movemask_epi8(anchors) as u32, starts)
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    use super::{Marks, Probe};

    pub(super) fn label_ends(_: &[u8; 34], _: &[[u8; 2]]) -> Option<u32> {
        None
    }

    pub(super) fn mark(_: &[u8], _: usize, _: usize, _: &[Probe], _: bool, _: &mut Vec<Marks>) {
        unreachable!("the vector pass is not built on this architecture")
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Random bytes weighted towards what the marks look for.
    fn text(rng: &mut rand::rngs::StdRng, len: usize) -> Vec<u8> {
        const PIECES: &[&[u8]] = &[
            b"0",
            b"1",
            b"9",
            b"0 ",
            b"12/",
            b"12.",
            b"+4",
            b"@",
            b"A",
            b"Z",
            b"a",
            b"z",
            b" ",
            b"-",
            b".",
            b"/",
            b")",
            b"_",
            b"\n",
            b"\xc3\xa9",
            b"\xff",
            b"\0",
            b"CONFIDENTIAL",
            b"Password",
            b"client data",
            b"clientXdata",
            b"DoB",
            b"d.o.b",
            b"birth",
            b"born",
        ];
        super::super::text_from_pieces(rng, PIECES, len)
    }

    #[test]
    fn every_level_marks_the_same_anchors_and_every_keyword_start() {
        let words: Vec<Vec<u8>> = ["confidential", "password", "client data", "x"]
            .iter()
            .map(|w| w.as_bytes().to_vec())
            .collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for round in 0..200 {
            let len = rng.gen_range(0..3_000);
            let data = text(&mut rng, len);
            let from = if round % 2 == 0 {
                0
            } else {
                data.len().min(rng.gen_range(0..70))
            };
            let limit = data.len() - rng.gen_range(0..=data.len() - from).min(80);
            let marked = |level| {
                let mut out = Vec::new();
                Marker::at(&words, level).mark(&data, from, limit, &mut out);
                out
            };
            let portable = marked(Level::Portable);
            assert_eq!(portable.len(), (limit - from).div_ceil(BLOCK));
            for (k, m) in portable.iter().enumerate() {
                for bit in 0..BLOCK {
                    let i = from + k * BLOCK + bit;
                    let want = i < limit
                        && anchor_at([
                            i.checked_sub(1).map_or(0, |j| data[j]),
                            data[i],
                            data.get(i + 1).copied().unwrap_or(0),
                            data.get(i + 2).copied().unwrap_or(0),
                        ]);
                    assert_eq!(m.anchors >> bit & 1 == 1, want, "round {round}, byte {i}");
                }
            }
            for level in Level::available().into_iter().skip(1) {
                let got = marked(level);
                assert_eq!(got.len(), portable.len());
                for (k, (g, p)) in got.iter().zip(&portable).enumerate() {
                    assert_eq!(
                        g.anchors,
                        p.anchors,
                        "{} block {k}, round {round}",
                        level.name()
                    );
                    for bit in 0..BLOCK {
                        let i = from + k * BLOCK + bit;
                        let keyword = i < limit
                            && words.iter().any(|w| {
                                data.get(i..i + w.len())
                                    .is_some_and(|here| here.eq_ignore_ascii_case(w))
                            });
                        if keyword {
                            assert!(g.starts >> bit & 1 == 1, "{}: byte {i}", level.name());
                        }
                        if i >= limit {
                            assert_eq!(g.starts >> bit & 1, 0, "{}: past the limit", level.name());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn label_ends_are_the_word_ends_after_the_pairs() {
        let pairs = [*b"ob", *b"rn", *b".b"];
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let mut seen = 0;
        for _ in 0..500 {
            let len = 40 + rng.gen_range(0..40);
            let data = text(&mut rng, len);
            let end = rng.gen_range(34..=data.len());
            let got = label_ends(&data, end, &pairs);
            if !cfg!(target_arch = "x86_64") {
                assert_eq!(got, None, "the caller looks byte by byte");
                return;
            }
            let got = got.expect("SSE2 is there on x86-64");
            for k in 0..32 {
                let e = end - 32 + k;
                let pair = [data[e - 2] | 0x20, data[e - 1] | 0x20];
                let want = pairs.contains(&pair) && !word(data[e]);
                assert_eq!(got >> k & 1 == 1, want, "end {e} of {:?}", &data[e - 2..=e]);
                seen += usize::from(want);
            }
        }
        assert!(
            seen > 50,
            "the text holds enough label ends to test: {seen}"
        );
    }
}
