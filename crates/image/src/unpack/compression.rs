//! Layer compression: media types, magic-byte detection and decoders.

use std::io::{self, BufReader, Cursor, Read};

use super::UnpackError;

/// Decoded bytes buffered between a decoder and the tar reader.
const DECODED_BUFFER_BYTES: usize = 128 * 1024;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const BZIP2_MAGIC: &[u8] = b"BZh";
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip (RFC 1952); several concatenated members are read as one stream.
    Gzip,
    /// Zstandard (RFC 8878).
    Zstd,
    /// Decide from the first bytes of the stream: gzip and zstd magic numbers,
    /// anything else is read as plain tar. bzip2 and xz are recognised and refused.
    #[default]
    Detect,
}

impl Compression {
    /// The compression a layer media type declares.
    ///
    /// Knows the OCI layer types (`application/vnd.oci.image.layer.v1.tar`, `+gzip`,
    /// `+zstd`, and the deprecated non-distributable variants) and Docker's
    /// `application/vnd.docker.image.rootfs.diff.tar.gzip` (and `foreign`).
    ///
    /// ```
    /// use strata_image::unpack::Compression;
    /// let c = Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+zstd");
    /// assert_eq!(c.ok(), Some(Compression::Zstd));
    /// ```
    pub fn from_media_type(media_type: &str) -> Result<Self, UnpackError> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Ok(Self::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Ok(Self::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Ok(Self::Zstd),
            other => Err(UnpackError::UnsupportedMediaType(other.to_owned())),
        }
    }

    /// Recognises gzip and zstd by their magic numbers; `None` (plain tar) otherwise.
    ///
    /// Returns an error for bzip2 and xz, which OCI layers do not use.
    pub fn detect(head: &[u8]) -> Result<Self, UnpackError> {
        if head.starts_with(GZIP_MAGIC) {
            Ok(Self::Gzip)
        } else if head.starts_with(ZSTD_MAGIC) {
            Ok(Self::Zstd)
        } else if head.starts_with(XZ_MAGIC) {
            Err(UnpackError::UnsupportedCompression("xz"))
        } else if head.starts_with(BZIP2_MAGIC) {
            Err(UnpackError::UnsupportedCompression("bzip2"))
        } else {
            Ok(Self::None)
        }
    }
}

/// Wraps `reader` in the decoder `compression` asks for, peeking at the first bytes
/// for [`Compression::Detect`].
pub fn decoder<'r>(
    mut reader: impl Read + 'r,
    compression: Compression,
) -> Result<Box<dyn Read + 'r>, UnpackError> {
    if compression == Compression::Detect {
        let mut head = [0u8; 6];
        let len = read_up_to(&mut reader, &mut head).map_err(UnpackError::Read)?;
        let detected = Compression::detect(&head[..len])?;
        let reader = Cursor::new(head).take(len as u64).chain(reader);
        return wrap(reader, detected);
    }
    wrap(reader, compression)
}

fn wrap<'r>(
    reader: impl Read + 'r,
    compression: Compression,
) -> Result<Box<dyn Read + 'r>, UnpackError> {
    // The tar reader asks for 512-byte headers one at a time; decoder output is
    // buffered so each of those is a copy rather than a decoder call.
    Ok(match compression {
        Compression::None | Compression::Detect => Box::new(reader),
        Compression::Gzip => Box::new(BufReader::with_capacity(
            DECODED_BUFFER_BYTES,
            flate2::read::MultiGzDecoder::new(reader),
        )),
        Compression::Zstd => Box::new(BufReader::with_capacity(
            DECODED_BUFFER_BYTES,
            zstd::stream::read::Decoder::new(reader).map_err(UnpackError::Decompressor)?,
        )),
    })
}

/// Reads until `buf` is full or the stream ends; returns how much was read.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
