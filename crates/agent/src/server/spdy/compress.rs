//! SPDY/3 header compression: every header block of a session, in both directions, is
//! one zlib stream primed with the dictionary of the SPDY/3 draft (section 2.6.10.1),
//! each block ending in a sync flush so the peer can decode it on its own arrival.
//! Blocks must therefore be compressed in the order they go on the wire, and every
//! received block decompressed in order, even those of frames that are then ignored.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The header names that open the SPDY/3 dictionary, each stored with a 32-bit
/// big-endian length before it.
const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The rest of the dictionary: raw text (status codes, dates, common values).
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information",
    "204 No Content",
    "301 Moved Permanently",
    "400 Bad Request",
    "401 Unauthorized",
    "403 Forbidden",
    "404 Not Found",
    "500 Internal Server Error",
    "501 Not Implemented",
    "503 Service Unavailable",
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,",
    "text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch",
    "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

/// The SPDY/3 zlib dictionary (1423 bytes).
pub fn dictionary() -> Vec<u8> {
    let mut dict = Vec::with_capacity(1423);
    for word in DICTIONARY_WORDS {
        let len = u32::try_from(word.len()).unwrap_or(u32::MAX);
        dict.extend_from_slice(&len.to_be_bytes());
        dict.extend_from_slice(word.as_bytes());
    }
    dict.extend_from_slice(DICTIONARY_TAIL.as_bytes());
    dict
}

/// Errors of header compression.
#[derive(Debug, thiserror::Error)]
pub enum CompressionError {
    /// zlib refused to compress.
    #[error("cannot compress a header block")]
    Compress(#[source] flate2::CompressError),
    /// The peer's block is not valid zlib data (or asks for another dictionary).
    #[error("cannot decompress a header block")]
    Decompress(#[source] flate2::DecompressError),
    /// The decompressed block would exceed the limit.
    #[error("header block larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// zlib made no progress on the input (truncated or corrupt data).
    #[error("header block is truncated")]
    Stalled,
}

/// Compresses the header blocks one side of a session sends.
pub struct HeaderCompressor {
    zlib: Compress,
}

impl HeaderCompressor {
    /// A compressor primed with the SPDY/3 dictionary.
    pub fn new() -> Result<Self, CompressionError> {
        let mut zlib = Compress::new(Compression::best(), true);
        zlib.set_dictionary(&dictionary())
            .map_err(CompressionError::Compress)?;
        Ok(Self { zlib })
    }

    /// Compresses one header block, ending it with a sync flush.
    pub fn compress(&mut self, block: &[u8]) -> Result<Vec<u8>, CompressionError> {
        let start = self.zlib.total_in();
        let mut out = Vec::with_capacity(block.len() / 2 + 64);
        loop {
            let consumed = usize::try_from(self.zlib.total_in() - start).unwrap_or(usize::MAX);
            let rest = block.get(consumed..).unwrap_or_default();
            if out.len() == out.capacity() {
                out.reserve(rest.len() + 64);
            }
            self.zlib
                .compress_vec(rest, &mut out, FlushCompress::Sync)
                .map_err(CompressionError::Compress)?;
            let all_in = self.zlib.total_in() - start >= block.len() as u64;
            // zlib finished the flush when it left output space unused.
            if all_in && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// Decompresses the header blocks the peer sends.
pub struct HeaderDecompressor {
    zlib: Decompress,
}

impl Default for HeaderDecompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderDecompressor {
    /// A decompressor that supplies the SPDY/3 dictionary when the stream asks for it.
    pub fn new() -> Self {
        Self {
            zlib: Decompress::new(true),
        }
    }

    /// Decompresses one header block, refusing output beyond `limit` bytes.
    pub fn decompress(&mut self, block: &[u8], limit: usize) -> Result<Vec<u8>, CompressionError> {
        let start = self.zlib.total_in();
        let mut out = Vec::with_capacity(block.len().saturating_mul(4).min(limit) + 64);
        loop {
            let consumed = usize::try_from(self.zlib.total_in() - start).unwrap_or(usize::MAX);
            let Some(rest) = block.get(consumed..) else {
                return Err(CompressionError::Stalled);
            };
            if rest.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
            if out.len() == out.capacity() {
                if out.len() >= limit {
                    return Err(CompressionError::TooLarge { limit });
                }
                out.reserve((limit - out.len()).min(4096));
            }
            let (before_in, before_out) = (self.zlib.total_in(), out.len());
            match self
                .zlib
                .decompress_vec(rest, &mut out, FlushDecompress::Sync)
            {
                Ok(Status::StreamEnd) => return Ok(out),
                Ok(_) => {}
                Err(err) if err.needs_dictionary().is_some() => {
                    self.zlib
                        .set_dictionary(&dictionary())
                        .map_err(CompressionError::Decompress)?;
                    continue;
                }
                Err(err) => return Err(CompressionError::Decompress(err)),
            }
            if out.len() > limit {
                return Err(CompressionError::TooLarge { limit });
            }
            let progressed = self.zlib.total_in() != before_in || out.len() != before_out;
            if !progressed && out.len() < out.capacity() {
                return Err(CompressionError::Stalled);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_has_the_drafts_size() {
        let dict = dictionary();
        assert_eq!(dict.len(), 1423);
        assert_eq!(&dict[..11], b"\0\0\0\x07options");
        assert!(dict.ends_with(b",*,enq=0."));
    }

    #[test]
    fn blocks_round_trip_and_later_blocks_use_earlier_ones() {
        let mut compressor = HeaderCompressor::new().unwrap();
        let mut decompressor = HeaderDecompressor::new();
        let block = b"\0\0\0\x01\0\0\0\x0astreamtype\0\0\0\x04data".to_vec();
        let first = compressor.compress(&block).unwrap();
        // The zlib header asks for a preset dictionary (FDICT).
        assert_eq!(first[1] & 0x20, 0x20);
        assert!(first.ends_with(&[0, 0, 0xff, 0xff]), "sync flush");
        let second = compressor.compress(&block).unwrap();
        assert!(second.len() < first.len(), "the repeat refers back");
        assert_eq!(decompressor.decompress(&first, 1024).unwrap(), block);
        assert_eq!(decompressor.decompress(&second, 1024).unwrap(), block);
        let empty = compressor.compress(b"").unwrap();
        assert_eq!(decompressor.decompress(&empty, 1024).unwrap(), b"");
    }

    #[test]
    fn oversized_and_corrupt_blocks_are_refused() {
        let mut compressor = HeaderCompressor::new().unwrap();
        let big = compressor.compress(&[b'x'; 10_000]).unwrap();
        let err = HeaderDecompressor::new()
            .decompress(&big, 1000)
            .unwrap_err();
        assert!(matches!(err, CompressionError::TooLarge { limit: 1000 }));
        assert!(
            HeaderDecompressor::new()
                .decompress(b"\x78\xbb garbage", 1000)
                .is_err()
        );
        // A truncated block decodes to less than was sent (the frame parser refuses it).
        let whole = HeaderCompressor::new()
            .unwrap()
            .compress(b"abcdef")
            .unwrap();
        let partial = HeaderDecompressor::new().decompress(&whole[..4], 1000);
        assert!(!matches!(partial, Ok(ref bytes) if bytes == b"abcdef"));
    }
}
