//! The protobuf wire format, read: a message is a sequence of (field number, value)
//! records, each value a varint, 64 or 32 fixed bits, or a length-delimited slice.

use super::ProtobufError;

/// One value as it stands on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireValue<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2: strings, bytes, messages, packed repeated scalars.
    Bytes(&'a [u8]),
    /// Wire type 5.
    Fixed32(u32),
}

/// The records of one message, in wire order.
pub(crate) struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Records<'a> {
    /// Reads the records of `message`.
    pub fn new(message: &'a [u8]) -> Self {
        Self { rest: message }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<(u32, WireValue<'a>), ProtobufError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let record = read_record(&mut self.rest);
        if record.is_err() {
            // One error ends the iteration.
            self.rest = &[];
        }
        Some(record)
    }
}

fn read_record<'a>(input: &mut &'a [u8]) -> Result<(u32, WireValue<'a>), ProtobufError> {
    let key = read_varint(input)?;
    let number = u32::try_from(key >> 3)
        .ok()
        .filter(|n| *n != 0)
        .ok_or_else(|| ProtobufError::Wire(format!("invalid field number {}", key >> 3)))?;
    let value = match key & 7 {
        0 => WireValue::Varint(read_varint(input)?),
        1 => WireValue::Fixed64(u64::from_le_bytes(
            take(input, 8)?
                .try_into()
                .map_err(|_| ProtobufError::Wire("truncated fixed64".into()))?,
        )),
        2 => {
            let len = usize::try_from(read_varint(input)?)
                .map_err(|_| ProtobufError::Wire("length out of range".into()))?;
            WireValue::Bytes(take(input, len)?)
        }
        5 => WireValue::Fixed32(u32::from_le_bytes(
            take(input, 4)?
                .try_into()
                .map_err(|_| ProtobufError::Wire("truncated fixed32".into()))?,
        )),
        other => {
            return Err(ProtobufError::Wire(format!(
                "unsupported wire type {other} for field {number}"
            )));
        }
    };
    Ok((number, value))
}

/// Reads one base-128 varint (at most ten bytes).
pub(crate) fn read_varint(input: &mut &[u8]) -> Result<u64, ProtobufError> {
    let mut value = 0u64;
    for (i, byte) in input.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *input = &input[i + 1..];
            return Ok(value);
        }
    }
    Err(ProtobufError::Wire("truncated or overlong varint".into()))
}

fn take<'a>(input: &mut &'a [u8], len: usize) -> Result<&'a [u8], ProtobufError> {
    if input.len() < len {
        return Err(ProtobufError::Wire(format!(
            "a value of {len} bytes runs past the end of its message ({} left)",
            input.len()
        )));
    }
    let (value, rest) = input.split_at(len);
    *input = rest;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_wire_type() {
        // field 1 varint 150; field 2 bytes "hi"; field 3 fixed64 1; field 4 fixed32 2
        let bytes = [
            0x08, 0x96, 0x01, 0x12, 0x02, b'h', b'i', 0x19, 1, 0, 0, 0, 0, 0, 0, 0, 0x25, 2, 0, 0,
            0,
        ];
        let records: Vec<_> = Records::new(&bytes).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            records,
            vec![
                (1, WireValue::Varint(150)),
                (2, WireValue::Bytes(b"hi")),
                (3, WireValue::Fixed64(1)),
                (4, WireValue::Fixed32(2)),
            ]
        );
    }

    #[test]
    fn truncation_and_bad_types_are_errors() {
        for bytes in [
            &[0x12, 0x05, b'a'][..],
            &[0x08, 0x80][..],
            &[0x0b][..],
            &[0x00, 0x01][..],
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ][..],
        ] {
            assert!(
                Records::new(bytes).any(|r| r.is_err()),
                "{bytes:?} should not decode"
            );
        }
    }
}
