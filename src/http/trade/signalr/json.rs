//! The JSON hub protocol, version 1: each message is a JSON object ended by `0x1E`, in
//! text frames; a frame may carry several records and a record may span frames.

use super::protocol::{sequence_id, tracked_type, Broken, HubMessage, HubProtocol, Outgoing, RS};
use crate::actors::hub::Frame;
use serde_json::{json, Value};
use std::collections::VecDeque;

pub struct Json;

impl HubProtocol for Json {
    fn name(&self) -> &'static str {
        "json"
    }

    fn slot(&self) -> usize {
        1
    }

    fn binary(&self) -> bool {
        false
    }

    fn read(&self, buf: &mut Vec<u8>, max: usize, out: &mut VecDeque<HubMessage>) -> Result<(), Broken> {
        let mut start = 0;
        while let Some(len) = buf[start..].iter().position(|&b| b == RS) {
            let record = &buf[start..start + len];
            start += len + 1;
            if !record.iter().all(u8::is_ascii_whitespace) {
                out.push_back(decode(record)?);
            }
        }
        buf.drain(..start);
        if buf.len() > max {
            return Err(Broken::TooLarge);
        }
        Ok(())
    }

    fn write(&self, msg: &Outgoing<'_>) -> Frame {
        let v = match *msg {
            Outgoing::Invocation { target, argument } => {
                json!({ "type": 1, "target": target, "arguments": [argument] })
            }
            Outgoing::Completion { id, outcome: Ok(result) } => {
                json!({ "type": 3, "invocationId": id, "result": result.unwrap_or(&Value::Null) })
            }
            Outgoing::Completion { id, outcome: Err(e) } => json!({ "type": 3, "invocationId": id, "error": e }),
            Outgoing::Ping => json!({ "type": 6 }),
            Outgoing::Close { error, allow_reconnect } => {
                json!({ "type": 7, "error": error, "allowReconnect": allow_reconnect })
            }
            Outgoing::Ack { id } => json!({ "type": 8, "sequenceId": id }),
            Outgoing::Sequence { id } => json!({ "type": 9, "sequenceId": id }),
        };
        let mut s = v.to_string();
        s.push(RS as char);
        Frame::text(s)
    }
}

fn decode(record: &[u8]) -> Result<HubMessage, Broken> {
    let v: Value = serde_json::from_slice(record).map_err(|e| Broken::Invalid(format!("Invalid message: {e}")))?;
    let kind = v
        .get("type")
        .and_then(Value::as_u64)
        .ok_or_else(|| Broken::Invalid("Invalid message: 'type' is required.".into()))?;
    let id = v.get("invocationId").and_then(Value::as_str).map(str::to_string);
    Ok(match kind {
        1 => {
            let call = match (v.get("target").and_then(Value::as_str), v.get("arguments")) {
                (None, _) => Err("Invalid invocation: 'target' is required.".to_string()),
                (Some(t), Some(Value::Array(a))) => Ok((t.to_string(), a.clone())),
                (Some(t), None | Some(Value::Null)) => Ok((t.to_string(), Vec::new())),
                (Some(_), Some(_)) => Err("Invalid invocation: 'arguments' must be an array.".to_string()),
            };
            let streams = v.get("streamIds").and_then(Value::as_array).is_some_and(|s| !s.is_empty());
            HubMessage::Invocation { id, call, streams }
        }
        4 => HubMessage::StreamInvocation { id },
        7 => HubMessage::Close,
        8 | 9 => {
            let n = v.get("sequenceId");
            let n = sequence_id(n.and_then(Value::as_i64), n.and_then(Value::as_u64).is_some())?;
            if kind == 8 {
                HubMessage::Ack(n)
            } else {
                HubMessage::Sequence(n)
            }
        }
        k if tracked_type(k) => HubMessage::IgnoredTracked,
        _ => HubMessage::Ignored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_split_at_the_separator_and_may_span_frames() {
        let mut buf =
            b"{\"type\":1,\"invocationId\":\"1\",\"target\":\"JoinRoom\",\"arguments\":[7]}\x1e{\"type\":6}\x1e{\"ty"
                .to_vec();
        let mut out = VecDeque::new();
        Json.read(&mut buf, 1 << 10, &mut out).expect("read");
        assert_eq!(
            out.pop_front(),
            Some(HubMessage::Invocation {
                id: Some("1".into()),
                call: Ok(("JoinRoom".into(), vec![json!(7)])),
                streams: false
            })
        );
        assert_eq!(out.pop_front(), Some(HubMessage::Ignored));
        assert_eq!(buf, b"{\"ty");
        buf.extend_from_slice(b"pe\":7}\x1e");
        Json.read(&mut buf, 1 << 10, &mut out).expect("read");
        assert_eq!(out.pop_front(), Some(HubMessage::Close));
        assert!(buf.is_empty());
        let mut bad = b"{nope}\x1e".to_vec();
        assert!(matches!(Json.read(&mut bad, 1 << 10, &mut out), Err(Broken::Invalid(_))));
        let mut seq = b"{\"type\":8,\"sequenceId\":3}\x1e{\"type\":9,\"sequenceId\":-1}\x1e{\"type\":9,\"sequenceId\":18446744073709551615}\x1e{\"type\":3,\"invocationId\":\"1\"}\x1e".to_vec();
        Json.read(&mut seq, 1 << 10, &mut out).expect("read");
        let read: Vec<HubMessage> = out.drain(..).collect();
        assert_eq!(
            read,
            vec![
                HubMessage::Ack(3),
                HubMessage::Sequence(-1),
                HubMessage::Sequence(i64::MAX),
                HubMessage::IgnoredTracked
            ]
        );
        let mut no_id = b"{\"type\":9}\x1e".to_vec();
        assert!(matches!(Json.read(&mut no_id, 1 << 10, &mut out), Err(Broken::Invalid(_))));
        let mut long = vec![b' '; 2048];
        assert_eq!(Json.read(&mut long, 1 << 10, &mut out), Err(Broken::TooLarge));
    }
}
