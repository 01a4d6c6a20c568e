//! Decompression bombs: files of a few MiB that inflate to GiBs. The deflate data is one
//! compressed 1 MiB unit repeated: after a full flush the compressor forgets its history,
//! so the bytes it writes for the unit are the same each time and can be copied instead of
//! compressing GiBs. The CRCs are combined from the unit's CRC the same way.

use flate2::{Compress, Compression, Crc, FlushCompress};

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// Raw deflate data that inflates to `head`, then `unit` `times` times, then `tail`.
pub struct Deflated {
    pub data: Vec<u8>,
    pub size: u64,
    pub crc: u32,
}

fn compress(c: &mut Compress, input: &[u8], flush: FlushCompress) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 2 + 1024);
    let before = c.total_in();
    loop {
        let done = (c.total_in() - before) as usize;
        out.reserve(64 * 1024);
        c.compress_vec(&input[done..], &mut out, flush).unwrap();
        let all_in = (c.total_in() - before) as usize == input.len();
        // Output space left over means the flush completed.
        if all_in && out.len() < out.capacity() {
            return out;
        }
    }
}

/// CRC-32 of `unit` repeated `times` times, by doubling.
fn repeated_crc(unit: &[u8], times: u64) -> Crc {
    let mut total = Crc::new();
    let mut power = Crc::new();
    power.update(unit);
    let mut n = times;
    while n > 0 {
        if n & 1 == 1 {
            total.combine(&power);
        }
        n >>= 1;
        if n > 0 {
            let copy = clone_crc(&power);
            power.combine(&copy);
        }
    }
    total
}

/// `Crc` is not `Clone`: a copy is an empty CRC extended by it.
fn clone_crc(c: &Crc) -> Crc {
    let mut copy = Crc::new();
    copy.combine(c);
    copy
}

pub fn deflate_repeated(head: &[u8], unit: &[u8], times: u64, tail: &[u8]) -> Deflated {
    let mut c = Compress::new(Compression::best(), false);
    let mut data = compress(&mut c, head, FlushCompress::Full);
    let once = compress(&mut c, unit, FlushCompress::Full);
    let again = compress(&mut c, unit, FlushCompress::Full);
    assert_eq!(once, again, "a full flush resets the compressor");
    data.reserve(once.len() * times as usize);
    for _ in 0..times {
        data.extend_from_slice(&once);
    }
    data.extend(compress(&mut c, tail, FlushCompress::Finish));

    let mut crc = Crc::new();
    crc.update(head);
    crc.combine(&repeated_crc(unit, times));
    let mut end = Crc::new();
    end.update(tail);
    crc.combine(&end);
    Deflated {
        data,
        size: head.len() as u64 + unit.len() as u64 * times + tail.len() as u64,
        crc: crc.sum(),
    }
}

/// `pattern` repeated to fill 1 MiB.
pub fn unit(pattern: &[u8]) -> Vec<u8> {
    pattern.iter().copied().cycle().take(MIB as usize).collect()
}

/// A gzip member around raw deflate data.
pub fn gzip(d: &Deflated) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3];
    out.extend_from_slice(&d.data);
    out.extend_from_slice(&d.crc.to_le_bytes());
    out.extend_from_slice(&(d.size as u32).to_le_bytes());
    out
}

/// A zip of deflated members, written by hand because no zip library takes data that is
/// compressed already. Every member stays under 4 GiB, so no Zip64 records are needed.
pub fn zip(members: &[(&str, &Deflated)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, d) in members {
        let size = u32::try_from(d.size).expect("members stay under 4 GiB");
        let packed = u32::try_from(d.data.len()).unwrap();
        let offset = u32::try_from(out.len()).unwrap();
        // version 2.0, flags 0, deflate, time and date, crc, sizes, name length, no extra.
        let common = |v: &mut Vec<u8>| {
            v.extend_from_slice(&20u16.to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes());
            v.extend_from_slice(&8u16.to_le_bytes());
            v.extend_from_slice(&0x4ac0u16.to_le_bytes());
            v.extend_from_slice(&0x5965u16.to_le_bytes());
            v.extend_from_slice(&d.crc.to_le_bytes());
            v.extend_from_slice(&packed.to_le_bytes());
            v.extend_from_slice(&size.to_le_bytes());
            v.extend_from_slice(&(name.len() as u16).to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes());
        };
        out.extend_from_slice(b"PK\x03\x04");
        common(&mut out);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&d.data);

        central.extend_from_slice(b"PK\x01\x02");
        central.extend_from_slice(&0x031eu16.to_le_bytes());
        common(&mut central);
        // comment length, disk, internal and external attributes, local header offset.
        central.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        central.extend_from_slice(&(0o100644u32 << 16).to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let start = u32::try_from(out.len()).unwrap();
    let n = members.len() as u16;
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&start.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}
