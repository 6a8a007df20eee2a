//! [`FrameGuard`]: follows a WebSocket client's frame headers through the bytes as they
//! are read, and stops at the first header announcing a payload over the size limit, so
//! that a header announcing 2^62 bytes closes the socket with 1009 at once (see
//! [`super::ws_violation`]) whatever the frame parser waits for. The session's reader
//! ([`super::session`]) calls [`FrameGuard::scan`] on every read; the `Stream` adapter
//! serves a byte stream the same way.
//!
//! It reads only frame headers (2 to 14 bytes, RFC 6455 §5.2) and counts payload bytes
//! past; the bytes themselves go through untouched to actix's parser, which does the rest
//! of the checking.

use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use futures_util::Stream;
use std::pin::Pin;
use std::task::{Context, Poll};

/// What the guard error says, so that the session can tell it from other stream errors.
pub const OVERSIZED: &str = "a frame over the size limit";

pub struct FrameGuard<S> {
    inner: S,
    max: u64,
    state: State,
}

enum State {
    /// The bytes of the header read so far.
    Header(Vec<u8>),
    /// Payload bytes left before the next header.
    Payload(u64),
    /// An oversized frame was announced: the stream has ended.
    Done,
}

impl<S> FrameGuard<S> {
    pub fn new(inner: S, max: usize) -> Self {
        FrameGuard { inner, max: max as u64, state: State::Header(Vec::with_capacity(14)) }
    }

    /// Follow frame boundaries through `chunk`; `false` when a header announces a payload
    /// over the limit.
    pub fn scan(&mut self, mut chunk: &[u8]) -> bool {
        while !chunk.is_empty() {
            match &mut self.state {
                State::Done => return false,
                State::Payload(left) => {
                    let n = (*left).min(chunk.len() as u64);
                    *left -= n;
                    chunk = &chunk[n as usize..];
                    if *left == 0 {
                        self.state = State::Header(Vec::with_capacity(14));
                    }
                }
                State::Header(head) => {
                    head.push(chunk[0]);
                    chunk = &chunk[1..];
                    let Some(len) = payload_len(head) else { continue };
                    if len > self.max {
                        self.state = State::Done;
                        return false;
                    }
                    self.state = if len == 0 { State::Header(Vec::with_capacity(14)) } else { State::Payload(len) };
                }
            }
        }
        true
    }
}

/// The payload length a complete header announces; `None` while it is incomplete.
fn payload_len(head: &[u8]) -> Option<u64> {
    if head.len() < 2 {
        return None;
    }
    let masked = head[1] & 0x80 != 0;
    let (ext, short) = match head[1] & 0x7f {
        126 => (2, None),
        127 => (8, None),
        n => (0, Some(n as u64)),
    };
    let full = 2 + ext + if masked { 4 } else { 0 };
    if head.len() < full {
        return None;
    }
    Some(match short {
        Some(n) => n,
        None => head[2..2 + ext].iter().fold(0u64, |acc, b| (acc << 8) | *b as u64),
    })
}

impl<S> Stream for FrameGuard<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let State::Done = self.state {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if self.scan(&chunk) {
                    Poll::Ready(Some(Ok(chunk)))
                } else {
                    let e = std::io::Error::new(std::io::ErrorKind::InvalidData, OVERSIZED);
                    Poll::Ready(Some(Err(PayloadError::Io(e))))
                }
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u64, masked: bool) -> Vec<u8> {
        let m = if masked { 0x80 } else { 0 };
        let mut h = vec![0x81];
        match len {
            0..=125 => h.push(m | len as u8),
            126..=65535 => {
                h.push(m | 126);
                h.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                h.push(m | 127);
                h.extend_from_slice(&len.to_be_bytes());
            }
        }
        if masked {
            h.extend_from_slice(&[1, 2, 3, 4]);
        }
        h
    }

    #[test]
    fn follows_frames_byte_by_byte_and_stops_at_an_oversized_header() {
        let mut g = FrameGuard::new((), 1000);
        let mut bytes = Vec::new();
        for len in [0u64, 5, 125, 126, 1000] {
            bytes.extend(header(len, true));
            bytes.extend(std::iter::repeat_n(7u8, len as usize));
        }
        // Split anywhere: one byte at a time.
        assert!(bytes.iter().all(|b| g.scan(&[*b])));
        assert!(g.scan(&header(1000, false)), "exactly the limit");
        assert!(g.scan(&[0; 1000]));
        assert!(!g.scan(&header(1 << 62, true)), "a 2^62-byte frame is refused at its header");
        assert!(!g.scan(b"more"), "and nothing after it");
        let mut g = FrameGuard::new((), 1000);
        assert!(!g.scan(&header(1001, true)));
    }
}
