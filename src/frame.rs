//! [`Frame`]: a WebSocket frame as the server sends it (RFC 6455 §5.2), encoded once and
//! written as it is to every socket it goes to. The hub carries frames without reading
//! them; the sessions' wires (`http::session`, the contracts' protocols) make them.

/// A WebSocket frame as the server sends it, header and payload in one buffer: encoded
/// once per event and protocol, and written as it is to every session of that protocol
/// (one `write` each, nothing copied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    wire: bytes::Bytes,
    /// The header's length.
    head: u8,
}

impl Frame {
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;

    /// A text frame.
    pub fn text(text: impl AsRef<str>) -> Frame {
        Frame::new(Frame::TEXT, text.as_ref().as_bytes())
    }

    /// A binary frame.
    pub fn binary(payload: &[u8]) -> Frame {
        Frame::new(Frame::BINARY, payload)
    }

    /// A whole (FIN), unmasked frame of `opcode` (RFC 6455 §5.2).
    pub fn new(opcode: u8, payload: &[u8]) -> Frame {
        let n = payload.len();
        let mut wire = bytes::BytesMut::with_capacity(n + 10);
        wire.extend_from_slice(&[0x80 | opcode]);
        if n < 126 {
            wire.extend_from_slice(&[n as u8]);
        } else if n <= u16::MAX as usize {
            wire.extend_from_slice(&[126]);
            wire.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            wire.extend_from_slice(&[127]);
            wire.extend_from_slice(&(n as u64).to_be_bytes());
        }
        let head = wire.len() as u8;
        wire.extend_from_slice(payload);
        Frame { wire: wire.freeze(), head }
    }

    /// The frame's opcode.
    pub fn opcode(&self) -> u8 {
        self.wire[0] & 0x0f
    }

    /// Its payload.
    pub fn payload(&self) -> &[u8] {
        &self.wire[self.head as usize..]
    }

    /// The frame as it goes on the wire.
    pub fn wire(&self) -> &bytes::Bytes {
        &self.wire
    }

    /// Its size on the wire, in bytes.
    pub fn len(&self) -> usize {
        self.wire.len()
    }

    pub fn is_empty(&self) -> bool {
        self.wire.is_empty()
    }
}
