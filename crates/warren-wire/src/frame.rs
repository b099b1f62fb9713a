//! Framing: a 4-byte big-endian length, then that many bytes of JSON.

use crate::{Message, WireError, MESSAGE_TYPES};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest payload accepted or sent: 8 MiB. A length prefix above it is an
/// error before anything is allocated.
pub const MAX_FRAME: usize = 8 * 1024 * 1024;

const HEADER: usize = 4;

fn check_len(len: usize) -> Result<(), WireError> {
    check_len_max(len, MAX_FRAME)
}

fn check_len_max(len: usize, max: usize) -> Result<(), WireError> {
    if len > max {
        return Err(WireError::FrameTooLarge { len, max });
    }
    Ok(())
}

/// Just the `type` tag; every other field is skipped without being built.
#[derive(serde::Deserialize)]
struct Tag<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

/// The bytes of one frame: length prefix and JSON payload.
pub fn encode_frame(msg: &Message) -> Result<Vec<u8>, WireError> {
    let payload = serde_json::to_vec(msg).map_err(|e| WireError::Encode(e.to_string()))?;
    check_len(payload.len())?;
    let len = u32::try_from(payload.len()).map_err(|_| WireError::FrameTooLarge {
        len: payload.len(),
        max: MAX_FRAME,
    })?;
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Decode one payload (without its length prefix), telling invalid JSON,
/// unknown message types and malformed known messages apart.
///
/// The payload is decoded straight into its typed message (after a first
/// pass that reads only the tag): never into a generic JSON tree, which
/// costs many times the payload's size in memory.
pub fn decode_payload(payload: &[u8]) -> Result<Message, WireError> {
    let tag: Result<Tag<'_>, _> = serde_json::from_slice(payload);
    let kind = match tag {
        Ok(Tag { kind: Some(k) }) => k.into_owned(),
        Ok(Tag { kind: None }) => return Err(no_type()),
        // Valid JSON that is not an object with a string tag.
        Err(e) if e.is_data() => return Err(no_type()),
        Err(e) => return Err(WireError::InvalidJson(e.to_string())),
    };
    if !MESSAGE_TYPES.contains(&kind.as_str()) {
        return Err(WireError::UnknownMessage(kind));
    }
    serde_json::from_slice(payload).map_err(|e| WireError::MalformedMessage {
        kind,
        detail: e.to_string(),
    })
}

fn no_type() -> WireError {
    WireError::MalformedMessage {
        kind: "?".into(),
        detail: "no string \"type\" field".into(),
    }
}

/// Write one framed message and flush.
pub async fn write_message<W>(w: &mut W, msg: &Message) -> Result<(), WireError>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    let frame = encode_frame(msg)?;
    w.write_all(&frame).await?;
    w.flush().await?;
    Ok(())
}

/// Read one framed message. `Ok(None)` is a clean end of stream (at a frame
/// boundary); an end inside a frame is [`WireError::Truncated`]. Not
/// cancel-safe: a partly read frame is lost if the future is dropped.
pub async fn read_message<R>(r: &mut R) -> Result<Option<Message>, WireError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut header = [0u8; HEADER];
    let mut got = 0;
    while let Some(rest) = header.get_mut(got..).filter(|s| !s.is_empty()) {
        let n = r.read(rest).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(WireError::Truncated {
                expected: HEADER,
                got,
            });
        }
        got += n;
    }
    let len = u32::from_be_bytes(header) as usize;
    check_len(len)?;
    // Grow with what actually arrives: a lying prefix costs nothing.
    let mut payload = Vec::with_capacity(len.min(64 * 1024));
    (&mut *r).take(len as u64).read_to_end(&mut payload).await?;
    if payload.len() < len {
        return Err(WireError::Truncated {
            expected: HEADER + len,
            got: HEADER + payload.len(),
        });
    }
    decode_payload(&payload).map(Some)
}

/// Incremental decoder for a byte stream that arrives in chunks (SSH channel
/// data): push what arrives, pop whole messages.
#[derive(Debug)]
pub(crate) struct FrameBuf {
    buf: Vec<u8>,
    max: usize,
}

impl Default for FrameBuf {
    fn default() -> Self {
        FrameBuf::with_max(MAX_FRAME)
    }
}

impl FrameBuf {
    /// A decoder refusing frames above `max` bytes (and above [`MAX_FRAME`]).
    pub(crate) fn with_max(max: usize) -> Self {
        FrameBuf {
            buf: Vec::new(),
            max: max.min(MAX_FRAME),
        }
    }

    pub(crate) fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes of an incomplete frame held back.
    pub(crate) fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Size of the frame being assembled: its full length once the prefix is
    /// in, the prefix length before.
    pub(crate) fn expected(&self) -> usize {
        HEADER + self.frame_len().unwrap_or(0)
    }

    fn frame_len(&self) -> Option<usize> {
        let prefix: [u8; HEADER] = self.buf.get(..HEADER)?.try_into().ok()?;
        Some(u32::from_be_bytes(prefix) as usize)
    }

    /// The next complete message, if any. An oversized length is reported as
    /// soon as the prefix is in, without waiting for the payload.
    pub(crate) fn next_message(&mut self) -> Result<Option<Message>, WireError> {
        let Some(len) = self.frame_len() else {
            return Ok(None);
        };
        check_len_max(len, self.max)?;
        let Some(payload) = self.buf.get(HEADER..HEADER + len) else {
            return Ok(None);
        };
        let msg = decode_payload(payload);
        self.buf.drain(..HEADER + len);
        msg.map(Some)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn frames_split_anywhere_reassemble() {
        let msgs = [
            Message::Confirm { serial: 1 },
            Message::hello("router"),
            Message::Bye { reason: "x".into() },
        ];
        let bytes: Vec<u8> = msgs.iter().flat_map(|m| encode_frame(m).unwrap()).collect();
        for chunk in [1, 3, 7, bytes.len()] {
            let mut fb = FrameBuf::default();
            let mut out = vec![];
            for c in bytes.chunks(chunk) {
                fb.push(c);
                while let Some(m) = fb.next_message().unwrap() {
                    out.push(m);
                }
            }
            assert_eq!(out, msgs);
            assert_eq!(fb.pending(), 0);
        }
    }

    #[test]
    fn oversized_prefix_fails_at_once_and_partial_frames_report_sizes() {
        let mut fb = FrameBuf::default();
        fb.push(&[0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(fb.next_message(), Err(WireError::FrameTooLarge { .. })));
        let mut fb = FrameBuf::default();
        fb.push(&[0, 0]);
        assert_eq!((fb.expected(), fb.pending()), (4, 2));
        fb.push(&[0, 10, b'{']);
        assert_eq!((fb.expected(), fb.pending()), (14, 5));
        assert!(fb.next_message().unwrap().is_none());
        // A lower cap refuses as soon as the prefix is in.
        let mut fb = FrameBuf::with_max(100);
        fb.push(&101u32.to_be_bytes());
        assert!(matches!(
            fb.next_message(),
            Err(WireError::FrameTooLarge { len: 101, max: 100 })
        ));
    }
}
