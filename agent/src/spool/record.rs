//! The spool's record format: one encoded `vigil.v1.Report` framed so that any damage is caught
//! before it is sent. A record is a fixed 28-byte header, then the body:
//!
//! ```text
//! offset  size  field
//!      0     4  magic "VGS\x02"
//!      4     1  flags: bit 0 = body is LZ4 block-compressed
//!      5     3  reserved, zero
//!      8     8  seq, little endian (the seq that counts: checked against the file name
//!                and against the report inside)
//!     16     4  body length in bytes, little endian
//!     20     4  uncompressed length in bytes, little endian
//!     24     4  CRC32C over bytes 0..24 and the body
//!     28     -  body
//! ```
//!
//! Pure: [`encode`] and [`decode`] touch no files, so every way a record can be damaged is
//! tested byte by byte.

use prost::Message;
use vigil_proto::v1::Report;

pub const MAGIC: [u8; 4] = *b"VGS\x02";
pub const HEADER_LEN: usize = 28;
const FLAG_LZ4: u8 = 1;
/// Bodies smaller than this are stored as they are: compressing them saves too little.
const COMPRESS_FROM: usize = 256;
/// No report is larger than this (the collector refuses far smaller ones); a length field
/// above it is damage, not a report, and is never allocated.
pub const MAX_REPORT_BYTES: usize = 64 << 20;

/// Why a record failed its checks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("{0} bytes: shorter than the {HEADER_LEN}-byte header")]
    Truncated(usize),
    #[error("bad magic {0:02x?}: not a spool record")]
    BadMagic([u8; 4]),
    #[error("unknown flags {0:#04x}")]
    BadFlags(u8),
    #[error("length field says {expected} body bytes, the file holds {actual}")]
    Length { expected: usize, actual: usize },
    #[error("checksum mismatch: header says {stored:#010x}, contents give {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("header seq {header} does not match {what} seq {other}")]
    SeqMismatch { header: u64, what: &'static str, other: u64 },
    #[error("body does not decompress: {0}")]
    Decompress(String),
    #[error("body is not a vigil.v1.Report: {0}")]
    Decode(String),
}

impl RecordError {
    /// A short stable name, used in quarantined file names and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Truncated(_) => "truncated",
            Self::BadMagic(_) => "bad-magic",
            Self::BadFlags(_) => "bad-flags",
            Self::Length { .. } => "length",
            Self::Checksum { .. } => "checksum",
            Self::SeqMismatch { .. } => "seq-mismatch",
            Self::Decompress(_) => "decompress",
            Self::Decode(_) => "decode",
        }
    }
}

fn checksum(header: &[u8], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&header[..24]), body)
}

/// Frames `report` (already carrying its seq) as one record.
pub fn encode(report: &Report) -> Vec<u8> {
    let raw = report.encode_to_vec();
    let compressed = (raw.len() >= COMPRESS_FROM)
        .then(|| lz4_flex::block::compress(&raw))
        .filter(|c| c.len() < raw.len());
    let (flags, body) = match &compressed {
        Some(c) => (FLAG_LZ4, c.as_slice()),
        None => (0, raw.as_slice()),
    };
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[flags, 0, 0, 0]);
    out.extend_from_slice(&report.seq.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    let crc = checksum(&out, body);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// The checked header of a record whose checksum holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub seq: u64,
    compressed: bool,
    raw_len: usize,
}

fn le_u32(bytes: &[u8], at: usize) -> usize {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize
}

/// Checks the frame (length, magic, flags, checksum) without decoding the body: what a start
/// does for every record, cheaply.
pub fn check(bytes: &[u8]) -> Result<Header, RecordError> {
    if bytes.len() < HEADER_LEN {
        return Err(RecordError::Truncated(bytes.len()));
    }
    let magic: [u8; 4] = bytes[..4].try_into().expect("4 bytes");
    if magic != MAGIC {
        return Err(RecordError::BadMagic(magic));
    }
    let flags = bytes[4];
    if flags & !FLAG_LZ4 != 0 || bytes[5..8] != [0, 0, 0] {
        return Err(RecordError::BadFlags(flags));
    }
    let body_len = le_u32(bytes, 16);
    let body = &bytes[HEADER_LEN..];
    if body.len() != body_len {
        return Err(RecordError::Length { expected: body_len, actual: body.len() });
    }
    let stored = le_u32(bytes, 24) as u32;
    let computed = checksum(bytes, body);
    if stored != computed {
        return Err(RecordError::Checksum { stored, computed });
    }
    let seq = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    Ok(Header { seq, compressed: flags & FLAG_LZ4 != 0, raw_len: le_u32(bytes, 20) })
}

/// Checks a record completely and returns its report. `file_seq` is the seq its file name
/// gives; the header's seq must equal it and the report's.
pub fn decode(bytes: &[u8], file_seq: u64) -> Result<Report, RecordError> {
    let header = check(bytes)?;
    if header.seq != file_seq {
        return Err(RecordError::SeqMismatch {
            header: header.seq,
            what: "file name",
            other: file_seq,
        });
    }
    let body = &bytes[HEADER_LEN..];
    let raw = if header.compressed {
        if header.raw_len > MAX_REPORT_BYTES {
            return Err(RecordError::Decompress(format!(
                "uncompressed length {} is over {MAX_REPORT_BYTES}",
                header.raw_len
            )));
        }
        let raw = lz4_flex::block::decompress(body, header.raw_len)
            .map_err(|e| RecordError::Decompress(e.to_string()))?;
        std::borrow::Cow::Owned(raw)
    } else {
        std::borrow::Cow::Borrowed(body)
    };
    if raw.len() != header.raw_len {
        return Err(RecordError::Length { expected: header.raw_len, actual: raw.len() });
    }
    let report = Report::decode(raw.as_ref()).map_err(|e| RecordError::Decode(e.to_string()))?;
    if report.seq != header.seq {
        return Err(RecordError::SeqMismatch {
            header: header.seq,
            what: "report",
            other: report.seq,
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use vigil_proto::v1::{HostFacts, ProbeResult};

    use super::*;

    fn report(seq: u64, probes: usize) -> Report {
        Report {
            agent_instance: "2f1d3c4e-0000-4000-8000-000000000001".into(),
            seq,
            collected_at_unix_ms: 1_700_000_000_000 + seq as i64,
            facts: Some(HostFacts { hostname: "db-01".into(), ..Default::default() }),
            probes: (0..probes)
                .map(|i| ProbeResult {
                    probe: format!("probe-{i}"),
                    message: "all is well ".repeat(4),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn round_trips_small_and_compressed_reports() {
        for probes in [0, 40] {
            let r = report(7, probes);
            let bytes = encode(&r);
            assert_eq!(bytes[4] & FLAG_LZ4 != 0, probes > 0, "large bodies are compressed");
            if probes > 0 {
                assert!(bytes.len() < r.encoded_len(), "compression must pay");
            }
            assert_eq!(decode(&bytes, 7).unwrap(), r);
        }
    }

    #[test]
    fn every_truncation_is_caught() {
        let bytes = encode(&report(3, 40));
        for len in 0..bytes.len() {
            let err = decode(&bytes[..len], 3).unwrap_err();
            assert!(
                matches!(err, RecordError::Truncated(_) | RecordError::Length { .. }),
                "cut at {len}: {err}"
            );
        }
        assert_eq!(decode(&[], 3).unwrap_err(), RecordError::Truncated(0));
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        for probes in [0, 40] {
            let bytes = encode(&report(5, probes));
            for bit in 0..bytes.len() * 8 {
                let mut damaged = bytes.clone();
                damaged[bit / 8] ^= 1 << (bit % 8);
                assert!(decode(&damaged, 5).is_err(), "flip of bit {bit} went unnoticed");
            }
        }
    }

    #[test]
    fn seq_must_match_name_and_report() {
        let r = report(9, 0);
        assert_eq!(
            decode(&encode(&r), 10).unwrap_err(),
            RecordError::SeqMismatch { header: 9, what: "file name", other: 10 }
        );
        // A record whose header was rewritten consistently (checksum recomputed) but whose
        // report inside carries another seq.
        let mut bytes = encode(&r);
        bytes[8..16].copy_from_slice(&10u64.to_le_bytes());
        let crc = checksum(&bytes, &bytes[HEADER_LEN..]);
        bytes[24..28].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode(&bytes, 10).unwrap_err(),
            RecordError::SeqMismatch { header: 10, what: "report", other: 9 }
        );
    }

    #[test]
    fn huge_length_fields_are_not_allocated() {
        let mut bytes = encode(&report(1, 40));
        bytes[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        let crc = checksum(&bytes, &bytes[HEADER_LEN..]);
        bytes[24..28].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(decode(&bytes, 1).unwrap_err(), RecordError::Decompress(_)));
    }
}
